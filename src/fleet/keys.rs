//! The fleet's Redis key names, pure: everything sessiongate keeps in Redis, under one prefix.
//!
//! ```text
//! <prefix>revocations            a Redis Stream; one entry per revocation (see super::entry)
//! <prefix>pin:<session>          a string: the workload a session is pinned to (see super::pins)
//! <prefix>dpop:<proof>           a string: a DPoP proof was used (see super::proofs)
//! ```
//!
//! Every process of a fleet (whatever its version) must compute the same names, so they are
//! written in one place.

/// Redis key names under one configured prefix, so several meshes can share a Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: Box<str>,
    stream: Box<str>,
}

impl Keys {
    /// The keys under `prefix` (e.g. `sessiongate:`; may be empty).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.into(),
            stream: format!("{prefix}revocations").into(),
        }
    }

    /// The revocation stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The pin of the session whose key (token hash, base64url) is `session`.
    pub fn pin(&self, session: &str) -> String {
        format!("{}pin:{session}", self.prefix)
    }

    /// The record of a used DPoP proof whose replay key (base64url) is `proof`.
    pub fn proof(&self, proof: &str) -> String {
        format!("{}dpop:{proof}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys::new("mesh-a:");
        assert_eq!(keys.stream(), "mesh-a:revocations");
        assert_eq!(keys.pin("abc"), "mesh-a:pin:abc");
        assert_eq!(keys.proof("abc"), "mesh-a:dpop:abc");
        assert_eq!(Keys::new("").stream(), "revocations");
    }
}
