//! The shared Redis link on its own, against a real `redis-server` (and a proxy that loses one
//! command): what a failure says about whether Redis ran the command, and which commands are
//! sent a second time after their connection dropped.
//!
//! - a command Redis refuses is `Refused`; one that cannot be sent (Redis stopped) is
//!   `NotSent`; one sent to a Redis that does not answer (frozen) is `Unanswered`, and Redis
//!   runs it when it resumes;
//! - a connection dropped after Redis ran a command: an idempotent one is sent again and answers
//!   as the first would have (`SET NX GET` of the pin returns the caller's own value); one
//!   declared `Retry::Never` is not, and is `Unanswered`.
//!
//! No Envoy and no sessiongate process: the fleet tests cover what a user sees.

mod support;

use std::time::{Duration, Instant};

use sessiongate::fleet::link::{LinkError, RedisLink, Retry};
use support::redis::{RedisServer, Sever, SeverWhen};
use support::run;

/// The link's bound on connecting and on each reply.
const TIMEOUT: Duration = Duration::from_millis(500);

fn link(url: &str) -> RedisLink {
    RedisLink::new(url, None, TIMEOUT).expect("a link")
}

async fn ping(link: &RedisLink) {
    let pong: String = link
        .query(&redis::cmd("PING"), Retry::Idempotent)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
}

#[test]
fn a_failure_says_whether_redis_ran_the_command() {
    run(async {
        let mut redis = RedisServer::start().await;
        let link = link(&redis.url());
        ping(&link).await;

        // Refused: Redis answered with an error and did not run it.
        let _: () = redis.query(redis::cmd("SET").arg("text").arg("x")).await;
        let refused = link
            .query::<String>(
                redis::cmd("XADD").arg("text").arg("*").arg("f").arg("v"),
                Retry::Idempotent,
            )
            .await
            .expect_err("XADD to a string key");
        assert!(
            matches!(&refused, LinkError::Refused(why) if why.contains("WRONGTYPE")),
            "{refused:?}"
        );

        // Unanswered: sent to a frozen Redis, which runs it when it resumes.
        redis.freeze();
        let asked = Instant::now();
        let unanswered = link
            .query::<i64>(redis::cmd("INCR").arg("frozen"), Retry::Idempotent)
            .await
            .expect_err("no reply from a frozen Redis");
        let waited = asked.elapsed();
        redis.thaw();
        assert!(
            matches!(&unanswered, LinkError::Unanswered(why) if why.ends_with("timed out")),
            "{unanswered:?}"
        );
        assert!(
            waited >= TIMEOUT && waited < TIMEOUT * 2,
            "a timeout is not resent: answered after {waited:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ran: Option<i64> = redis.query(redis::cmd("GET").arg("frozen")).await;
            if ran == Some(1) {
                break;
            }
            assert!(Instant::now() < deadline, "the unanswered INCR never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // NotSent: no connection to be had.
        redis.stop().await;
        let not_sent = link
            .query::<i64>(redis::cmd("INCR").arg("stopped"), Retry::Idempotent)
            .await
            .expect_err("Redis is stopped");
        assert!(matches!(not_sent, LinkError::NotSent(_)), "{not_sent:?}");
    });
}

#[test]
fn an_idempotent_command_whose_connection_dropped_is_sent_again_and_answers_as_the_first() {
    run(async {
        let redis = RedisServer::start().await;
        let sever = Sever::start(redis.addr()).await;
        let link = link(&sever.url());
        ping(&link).await;

        // The pin's claim: the first SET ran, its reply was lost; the resend finds the value
        // it set, the caller's own, so the claim reads as won.
        sever.arm("pin:session", SeverWhen::AfterReply);
        let previous: Option<String> = link
            .query(
                redis::cmd("SET")
                    .arg("pin:session")
                    .arg("spiffe:me")
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(60_000),
                Retry::Idempotent,
            )
            .await
            .expect("resent on a fresh connection");
        assert!(sever.fired());
        assert_eq!(previous.as_deref(), Some("spiffe:me"));
    });
}

#[test]
fn a_command_declared_never_is_not_sent_again() {
    run(async {
        let redis = RedisServer::start().await;
        let sever = Sever::start(redis.addr()).await;
        let link = link(&sever.url());
        ping(&link).await;

        sever.arm("counter", SeverWhen::AfterReply);
        let lost = link
            .query::<i64>(redis::cmd("INCR").arg("counter"), Retry::Never)
            .await
            .expect_err("its connection dropped before the reply");
        assert!(sever.fired());
        assert!(matches!(lost, LinkError::Unanswered(_)), "{lost:?}");
        let counter: i64 = redis.query(redis::cmd("GET").arg("counter")).await;
        assert_eq!(counter, 1, "ran once, not resent");
        // The next command gets a fresh connection.
        let next: i64 = link
            .query(redis::cmd("INCR").arg("counter"), Retry::Never)
            .await
            .expect("a fresh connection");
        assert_eq!(next, 2);
    });
}
