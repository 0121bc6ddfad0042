//! A child process (Envoy, sessiongate) that cannot outlive the test binary.
//!
//! Shared stacks live in statics, and Rust never drops statics, so `Drop` alone would leak an
//! Envoy and a sessiongate on every `cargo test`. Each child therefore runs under a tiny `sh`
//! watchdog that holds the read end of a pipe from us: when we close it, in `Drop` or because the
//! test binary exited or crashed, the watchdog sends SIGTERM (SIGKILL after 5 s). The watchdog
//! gets its own process group so a Ctrl-C meant for cargo does not kill it before it can clean up.
//!
//! Output (stdout and stderr) is drained by background threads, so a chatty child never blocks on
//! a full pipe, kept for failure messages, and streamed to whoever waits for a particular line.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// The watchdog: the child's pipes are handed to the child alone (so their EOF means it exited),
/// then `read` blocks until our end of stdin closes.
const WATCHDOG: &str = r#"
"$@" &
child=$!
exec >/dev/null 2>&1
read -r _ || :
kill -TERM "$child" 2>/dev/null || exit 0
( sleep 5; kill -KILL "$child" 2>/dev/null ) &
killer=$!
wait "$child"
status=$?
kill "$killer" 2>/dev/null
exit "$status"
"#;

/// How many output lines to keep for diagnostics.
const KEPT_LINES: usize = 400;

pub struct ChildProcess {
    name: String,
    watchdog: Child,
    /// Our end of the watchdog's stdin; closing it is the stop signal.
    stop: Option<ChildStdin>,
    output: Arc<Mutex<Vec<String>>>,
    /// Output streams still open; zero means the child exited (only it holds them).
    open_streams: Arc<AtomicUsize>,
}

impl ChildProcess {
    /// Starts `program args` in `cwd`. Every output line (stdout and stderr interleaved) is sent
    /// to the returned receiver, which reports `None` once the child closed both streams, i.e.
    /// exited. Dropping the receiver is fine: lines are then only kept for [`Self::output`].
    pub fn spawn<I, S>(
        name: &str,
        program: &Path,
        args: I,
        cwd: &Path,
        env: &[(&str, &str)],
    ) -> (ChildProcess, mpsc::UnboundedReceiver<String>)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut watchdog = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({}): {e}", program.display()));

        let output = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        let stdout = watchdog.stdout.take().expect("piped stdout");
        let stderr = watchdog.stderr.take().expect("piped stderr");
        let open_streams = Arc::new(AtomicUsize::new(2));
        drain(
            stdout,
            output.clone(),
            lines_tx.clone(),
            open_streams.clone(),
        );
        drain(stderr, output.clone(), lines_tx, open_streams.clone());

        let stop = watchdog.stdin.take();
        let process = ChildProcess {
            name: name.to_owned(),
            watchdog,
            stop,
            output,
            open_streams,
        };
        (process, lines_rx)
    }

    /// The last lines the child printed, for failure messages.
    pub fn output(&self) -> String {
        let lines = self.output.lock().expect("output lock");
        format!("--- last output of {} ---\n{}", self.name, lines.join("\n"))
    }

    /// True once the child has exited (both its output streams reached EOF), so a harness
    /// waiting for readiness can fail at once instead of at its deadline.
    pub fn exited(&self) -> bool {
        self.open_streams.load(Ordering::Acquire) == 0
    }

    /// Sends SIGKILL to the child itself (not the watchdog) and waits until it is gone: a crash
    /// with no chance to flush or clean up.
    pub async fn kill_hard(&mut self) {
        self.signal("KILL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.exited() {
            assert!(Instant::now() < deadline, "{} survived SIGKILL", self.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, ...) to the child itself, not the watchdog.
    pub fn signal(&self, signal: &str) {
        let watchdog = self.watchdog.id().to_string();
        let children: Vec<String> = std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(|entry| {
                let pid = entry.ok()?.file_name().into_string().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // `pid (comm) state ppid …`; comm may hold spaces, so split after the `)`.
                let ppid = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .to_owned();
                (ppid == watchdog).then_some(pid)
            })
            .collect();
        assert!(
            !children.is_empty(),
            "{} has no running child to signal",
            self.name
        );
        for pid in &children {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), pid])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -{signal} {pid} failed");
        }
    }

    /// Asks the child to stop (SIGTERM) and waits up to `timeout` for it to be gone.
    pub fn stop(&mut self, timeout: Duration) {
        drop(self.stop.take());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.watchdog.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // The watchdog is still waiting for the child, which will get SIGKILL from it.
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(6));
    }
}

fn drain(
    stream: impl Read + Send + 'static,
    output: Arc<Mutex<Vec<String>>>,
    lines: mpsc::UnboundedSender<String>,
    open_streams: Arc<AtomicUsize>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            {
                let mut kept = output.lock().expect("output lock");
                if kept.len() == KEPT_LINES {
                    kept.remove(0);
                }
                kept.push(line.clone());
            }
            // Nobody listening any more is normal once start-up is over.
            let _ = lines.send(line);
        }
        open_streams.fetch_sub(1, Ordering::AcqRel);
    });
}
