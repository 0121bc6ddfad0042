//! Sharing the strings that many cached sessions repeat.
//!
//! A million sessions typically carry a handful of distinct scope sets, client ids and workload
//! SPIFFE IDs. Keeping one `Arc<str>` per distinct value instead of one heap string per session
//! is most of what keeps the session cache within its memory budget.
//!
//! The table is bounded, because what reaches it comes from tokens and peers: only verified
//! tokens and mTLS-authenticated peers do, but an issuer or a workload could still mint endless
//! distinct values. Over-long strings are never interned, and a full table is simply emptied and
//! refilled with whatever repeats next. Interning only ever affects memory, never a result:
//! an interned string and a fresh one compare the same.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// Most distinct strings kept; at [`MAX_LEN`] bytes each the table stays under a few MiB.
const CAPACITY: usize = 4096;

/// Longer strings are not worth sharing (and would make a full table expensive).
const MAX_LEN: usize = 512;

/// The process-wide table. A std `Mutex`: it is only taken when a token is first verified or a
/// session first pinned, never on the cached path, and never held across an await.
static TABLE: Mutex<Option<HashSet<Arc<str>>>> = Mutex::new(None);

/// `text` as a shared string: the same `Arc` as every other caller's equal text, when the
/// table has it or room for it.
pub fn intern(text: &str) -> Arc<str> {
    if text.len() > MAX_LEN {
        return Arc::from(text);
    }
    let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(HashSet::new);
    if let Some(shared) = table.get(text) {
        return Arc::clone(shared);
    }
    if table.len() >= CAPACITY {
        table.clear();
    }
    let shared: Arc<str> = Arc::from(text);
    table.insert(Arc::clone(&shared));
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_text_shares_one_allocation() {
        let a = intern("orders:read orders:write");
        let b = intern(&String::from("orders:read orders:write"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*intern("other"), "other");
    }

    #[test]
    fn the_table_stays_bounded_and_over_long_text_is_not_kept() {
        let long = "x".repeat(MAX_LEN + 1);
        assert!(!Arc::ptr_eq(&intern(&long), &intern(&long)));
        for n in 0..CAPACITY + 10 {
            assert_eq!(&*intern(&format!("value-{n}")), format!("value-{n}"));
        }
        let len = TABLE.lock().unwrap().as_ref().unwrap().len();
        assert!(len <= CAPACITY, "{len}");
    }
}
