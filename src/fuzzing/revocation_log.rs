//! The `revocation_log` target: a log written by the real [`FileStore`], damaged as the input
//! says, then replayed by the real store.
//!
//! Input: the number of revocations N (1 to 6), a short text put into them (so record bodies
//! vary: quotes, escapes, multi-byte characters), then a mode byte:
//! - even, **a crash while appending** revocation N+1: the file holds the N acknowledged
//!   records, then the first bytes of the next one and/or zeros (the file grew but the data
//!   never landed), never the whole record. This is the store's *torn tail*: the replay must
//!   return exactly the N acknowledged revocations, move the tail aside and truncate the log to
//!   them. (A partly written record followed by zeros may instead be refused as corrupt: a
//!   refusal is loud, never silent.)
//! - odd, **damage to acknowledged records**: bytes flipped anywhere in the N records. The
//!   replay must refuse it as [`StoreError::Corrupt`] naming the file and the offset of the
//!   first damaged record. Two exceptions follow from the format, not the store: damage that
//!   leaves the log's tail looking exactly like a torn append (zeros from a record boundary to
//!   the end, or a checksummed length running past the end) is indistinguishable from a crash
//!   while appending that record, so the records before it load; and a damaged record whose
//!   two CRCs were forged to match is out of scope (CRC32 is no signature).
//!
//! In every case a replay never returns a record that was not written, nor more than N, nor
//! fewer unless the rest of the file is a torn append.

use std::sync::OnceLock;

use crate::revocation::file::{self as file_log, FileStore};
use crate::revocation::{Effect, Revocation, RevocationStore, Selector, StoreError};
use sessiongate_core::time::UnixTime;

/// The `revocation_log` target (see the module docs). Returns whether the replay succeeded.
pub fn revocation_log(data: &[u8]) -> bool {
    let mut input = Input(data);
    let count = 1 + usize::from(input.byte() % 6);
    let text_len = usize::from(input.byte() % 33);
    let text = String::from_utf8_lossy(input.take(text_len)).into_owned();
    let originals: Vec<Revocation> = (0..count).map(|i| revocation(i, &text)).collect();
    let mode = input.byte();

    let scratch = super::Scratch::new("revocation_log");
    let path = scratch.path().join("revocations");
    // Written by the real store; `boundaries[k]` is where record k starts, and the last entry
    // where the next one would.
    let (acknowledged, boundaries, next_record) = {
        let store = FileStore::open(&path).expect("opening a fresh log");
        let mut boundaries = vec![file_log::MAGIC.len()];
        for revocation in &originals {
            block_on(store.append(revocation)).expect("appending to a fresh log");
            boundaries.push(file_len(&path));
        }
        let acknowledged = std::fs::read(&path).expect("reading the log back");
        block_on(store.append(&revocation(count, &text))).expect("appending the next record");
        let next =
            std::fs::read(&path).expect("reading the log back")[acknowledged.len()..].to_vec();
        (acknowledged, boundaries, next)
    };

    if mode % 2 == 0 {
        crash_while_appending(&path, &acknowledged, &next_record, &originals, &mut input)
    } else {
        damage(&path, &acknowledged, &boundaries, &originals, &mut input)
    }
}

fn crash_while_appending(
    path: &std::path::Path,
    acknowledged: &[u8],
    next_record: &[u8],
    originals: &[Revocation],
    input: &mut Input<'_>,
) -> bool {
    let landed = usize::from(input.u16()) % next_record.len();
    let zeros = usize::from(input.u16()) % (next_record.len() - landed);
    let mut file = acknowledged.to_vec();
    file.extend_from_slice(&next_record[..landed]);
    file.resize(file.len() + zeros, 0);
    std::fs::write(path, &file).expect("writing the torn log");

    match load(path) {
        Ok(replayed) => {
            assert_eq!(
                replayed, originals,
                "a crash while appending lost or changed acknowledged revocations"
            );
            assert_eq!(
                std::fs::read(path).expect("reading the log"),
                acknowledged,
                "the torn tail is truncated away"
            );
            if file.len() > acknowledged.len() {
                assert_eq!(
                    torn_tails(path),
                    vec![file[acknowledged.len()..].to_vec()],
                    "the torn tail is kept aside"
                );
            }
            assert_eq!(
                load(path).expect("the truncated log loads"),
                originals,
                "replay is stable"
            );
            true
        }
        Err(StoreError::Corrupt(message)) if landed > 0 && zeros > 0 => {
            assert_names(&message, path, acknowledged.len());
            false
        }
        Err(error) => panic!(
            "a crash {landed} bytes into an append (then {zeros} zeros) was refused: {error}"
        ),
    }
}

fn damage(
    path: &std::path::Path,
    acknowledged: &[u8],
    boundaries: &[usize],
    originals: &[Revocation],
    input: &mut Input<'_>,
) -> bool {
    let mut file = acknowledged.to_vec();
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let at = usize::from(input.u16()) % file.len();
        file[at] ^= input.byte();
    }
    let Some(first) = file.iter().zip(acknowledged).position(|(a, b)| a != b) else {
        // The flips cancelled out.
        std::fs::write(path, &file).expect("writing the log");
        assert_eq!(load(path).expect("an intact log loads"), originals);
        return true;
    };
    // The damaged record, or the header (record "0" starting at offset 0).
    let record = boundaries.iter().rposition(|&start| start <= first);
    let start = record.map_or(0, |k| boundaries[k]);
    if record.is_some_and(|k| checksums_hold(&file[boundaries[k]..])) {
        return false; // a forged record (see the module docs)
    }
    std::fs::write(path, &file).expect("writing the damaged log");

    match load(path) {
        Err(StoreError::Corrupt(message)) => {
            assert_names(&message, path, start);
            assert_eq!(
                std::fs::read(path).expect("reading the log"),
                file,
                "a corrupt log is left alone"
            );
            false
        }
        Ok(replayed) => {
            let Some(k) = record.filter(|_| looks_torn(&file[start..])) else {
                panic!(
                    "damage at byte {first} was replayed as {} of {} revocations, not refused",
                    replayed.len(),
                    originals.len()
                );
            };
            assert_eq!(
                replayed,
                &originals[..k],
                "only the records before a torn-looking tail load"
            );
            true
        }
        Err(error) => panic!("damage was reported as {error}, not as corruption"),
    }
}

/// What the store calls a torn tail at the start of `rest` (see [`crate::revocation::FileStore`]):
/// too short for a record header, zeros, or a checksummed length running past the end.
fn looks_torn(rest: &[u8]) -> bool {
    if rest.len() < file_log::HEADER_LEN || rest.iter().all(|&b| b == 0) {
        return true;
    }
    let length = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
    let length_crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    crc32fast::hash(&rest[..4]) == length_crc
        && length <= file_log::MAX_BODY_LEN
        && file_log::HEADER_LEN + length as usize > rest.len()
}

/// Whether the record at the start of `rest` has a length and a body matching their checksums.
fn checksums_hold(rest: &[u8]) -> bool {
    if rest.len() < file_log::HEADER_LEN {
        return false;
    }
    let field = |at: usize| u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
    let end = file_log::HEADER_LEN + field(0) as usize;
    crc32fast::hash(&rest[..4]) == field(4)
        && rest.len() >= end
        && crc32fast::hash(&rest[file_log::HEADER_LEN..end]) == field(8)
}

fn assert_names(message: &str, path: &std::path::Path, offset: usize) {
    assert!(
        message.contains(&path.display().to_string())
            && message.contains(&format!("byte offset {offset}")),
        "the refusal names the file and byte offset {offset}: {message}"
    );
}

fn load(path: &std::path::Path) -> Result<Vec<Revocation>, StoreError> {
    let store = FileStore::open(path)?;
    block_on(store.load())
}

fn file_len(path: &std::path::Path) -> usize {
    let len = std::fs::metadata(path).expect("the log exists").len();
    usize::try_from(len).expect("a small log")
}

/// The contents of every `<log>.torn-*` file beside `path`.
fn torn_tails(path: &std::path::Path) -> Vec<Vec<u8>> {
    let name = path.file_name().expect("a file").to_string_lossy();
    let prefix = format!("{name}.torn-");
    let mut tails: Vec<Vec<u8>> = std::fs::read_dir(path.parent().expect("a folder"))
        .expect("listing the scratch folder")
        .map(|entry| entry.expect("a folder entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .map(|p| std::fs::read(p).expect("reading a torn tail"))
        .collect();
    tails.sort();
    tails
}

/// Revocation `i` of a log: every selector kind in turn, carrying `text`.
fn revocation(i: usize, text: &str) -> Revocation {
    let issuer = || format!("https://idp.example.test/{text}").into();
    let name = format!("{text}-{i}").into_boxed_str();
    let selector = match i % 7 {
        0 => Selector::Subject {
            issuer: issuer(),
            sub: name,
        },
        1 => Selector::TokenId {
            issuer: issuer(),
            jti: name,
        },
        2 => Selector::Session {
            issuer: issuer(),
            sid: name,
        },
        3 => Selector::Client { client_id: name },
        4 => Selector::Workload { spiffe_id: name },
        5 => Selector::Email { email: name },
        _ => Selector::Issuer { issuer: issuer() },
    };
    let at = 1_800_000_000 + i as u64;
    Revocation {
        selector,
        issued_before: UnixTime::from_secs(at),
        effect: if i.is_multiple_of(2) {
            Effect::Revoke
        } else {
            Effect::RequireReauthentication
        },
        recorded_at: UnixTime::from_millis(at * 1000 + 1),
        origin: "fuzzing".into(),
        reason: text.into(),
        // Some revocations carry an issuer scope (as SSF ones do), some none (as admin ones).
        issuers: i
            .is_multiple_of(3)
            .then(|| vec![issuer()].into_boxed_slice()),
        // Some carry the retention promised when they were recorded, some (older) none.
        retain_until: i.is_multiple_of(2).then(|| UnixTime::from_secs(at + 900)),
    }
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
        })
        .block_on(future)
}

/// The fuzzer's bytes, read front to back; reading past the end yields zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn byte(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
}
