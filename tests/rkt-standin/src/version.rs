//! Which rkt the stand-in pretends to be, and `rkt version` in rkt 1.x's format.
//!
//! The version reported (by `rkt version` and the API service's GetInfo) is, first found:
//! 1. the release stamp: a real rkt has its version compiled in, and one build of the stand-in is turned into
//!    release archives of several rkt versions by writing each version into a slot of the built binary
//!    ([`stamp`], for the harness's release archives). A stamped binary is a release, and, as a real rkt,
//!    ignores `RKT_STANDIN_VERSION`: the test nodes set that variable in a drop-in of `rkt-api.service`, and a
//!    release installed there must still report its own version;
//! 2. `RKT_STANDIN_VERSION` from the environment ([`VERSION_ENV`]), when set and not empty;
//! 3. the version built in ([`BUILD_VERSION`]).
//!
//! The slot is [`STAMP_SLOT_LEN`] bytes: [`STAMP_MARKER`], then the stamp, then NUL bytes. The stamp is a version
//! (`1.29.0`), optionally followed by a space and a fault word ([`RELEASE_FAULTS`]): `exit` makes a broken
//! release, whose API service exits at start with an error naming the stamp, before it opens its socket (its
//! `rkt version` still answers). An unstamped build's slot holds the marker and NUL bytes only.

use std::io::Write;

use rktnetes_operator::rkt::APPC_VERSION;

/// Overrides the version at start, so one build can play an older rkt on one test node and a newer on another.
pub const VERSION_ENV: &str = "RKT_STANDIN_VERSION";

/// The version built in: `RKT_STANDIN_VERSION` at compile time, else 1.30.0, rkt's last release.
pub const BUILD_VERSION: &str = match option_env!("RKT_STANDIN_VERSION") {
    Some(version) => version,
    None => "1.30.0",
};

/// What begins the release stamp slot; [`stamp`] finds the slot in a built binary by it. It occurs nowhere else
/// in the `rkt` binary: only the slot's initial value is made of it.
pub const STAMP_MARKER: &[u8] = b"RKTNETES-STANDIN-RELEASE-STAMP:";

/// The size of the release stamp slot, marker included.
pub const STAMP_SLOT_LEN: usize = 64;

/// The longest stamp the slot holds.
pub const STAMP_CAPACITY: usize = STAMP_SLOT_LEN - STAMP_MARKER.len();

/// The fault words a stamp may carry: `exit`, a release whose API service exits at start.
pub const RELEASE_FAULTS: [&str; 1] = ["exit"];

/// The release stamp slot. `#[used]` keeps it in the binary; it is read with a volatile read
/// ([`release_stamp`]), so the compiler cannot fold its unstamped value into the code.
#[used]
static RELEASE_STAMP: [u8; STAMP_SLOT_LEN] = unstamped_slot();

/// The marker followed by NUL bytes.
const fn unstamped_slot() -> [u8; STAMP_SLOT_LEN] {
    let mut slot = [0; STAMP_SLOT_LEN];
    let mut index = 0;
    while index < STAMP_MARKER.len() {
        slot[index] = STAMP_MARKER[index];
        index += 1;
    }
    slot
}

/// The release this binary was stamped as: the version it reports, and its fault word, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseStamp {
    pub version: String,
    /// What is wrong with this release ([`RELEASE_FAULTS`]); `None` for a sound one.
    pub fault: Option<String>,
}

/// The stamp as written in the slot: `1.29.0` or `1.29.0 exit`.
impl std::fmt::Display for ReleaseStamp {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fault {
            Some(fault) => write!(formatter, "{} {fault}", self.version),
            None => formatter.write_str(&self.version),
        }
    }
}

/// This binary's release stamp; `None` for an unstamped build.
pub fn release_stamp() -> Option<ReleaseStamp> {
    // SAFETY: the pointer comes from a reference to a static, so it is valid, aligned and initialised.
    let slot = unsafe { std::ptr::read_volatile(&raw const RELEASE_STAMP) };
    read_slot(&slot)
}

/// The stamp in `slot` (a whole slot, marker first): the bytes after the marker up to the first NUL, if any.
fn read_slot(slot: &[u8]) -> Option<ReleaseStamp> {
    let stamp = slot.get(STAMP_MARKER.len()..)?;
    let end = stamp
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(stamp.len());
    let text = String::from_utf8_lossy(&stamp[..end]);
    let mut words = text.split_whitespace();
    let version = words.next()?.to_owned();
    let rest: Vec<&str> = words.collect();
    Some(ReleaseStamp {
        version,
        fault: (!rest.is_empty()).then(|| rest.join(" ")),
    })
}

/// The rkt version to report: the release stamp's ([`stamp`]); else `RKT_STANDIN_VERSION` from the environment
/// when set and not empty (a stamped release ignores it, as a real rkt would); else the build's.
pub fn rkt_version() -> String {
    if let Some(stamp) = release_stamp() {
        return stamp.version;
    }
    std::env::var(VERSION_ENV)
        .ok()
        .filter(|version| !version.trim().is_empty())
        .map_or_else(
            || BUILD_VERSION.to_owned(),
            |version| version.trim().to_owned(),
        )
}

/// Why a binary cannot be stamped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("no release stamp slot in the binary: it is not a build of the rkt stand-in")]
    NoSlot,
    #[error(
        "the release stamp marker occurs more than once in the binary (at bytes {first} and {second}): the slot \
         is ambiguous"
    )]
    AmbiguousSlot { first: usize, second: usize },
    #[error("the binary ends inside its release stamp slot (at byte {offset})")]
    TruncatedSlot { offset: usize },
    #[error(
        "{0:?} is not a version for a release stamp: it must be ASCII letters, digits, `.`, `-` and `+`, and not \
         empty"
    )]
    Version(String),
    #[error("{fault:?} is not a release fault; the known ones: {known}", fault = .0, known = RELEASE_FAULTS.join(", "))]
    UnknownFault(String),
    #[error("the release stamp {0:?} is longer than the slot's {STAMP_CAPACITY} bytes")]
    TooLong(String),
}

/// `binary` (a built `rkt` stand-in) stamped as the release `version`, broken by `fault` if given (one of
/// [`RELEASE_FAULTS`]). The slot, found by its marker, which must occur exactly once, is overwritten whole, so an
/// already stamped binary can be stamped again.
pub fn stamp(binary: &[u8], version: &str, fault: Option<&str>) -> Result<Vec<u8>, StampError> {
    let version_character = |byte: u8| byte.is_ascii_alphanumeric() || b".-+".contains(&byte);
    if version.is_empty() || !version.bytes().all(version_character) {
        return Err(StampError::Version(version.to_owned()));
    }
    if let Some(fault) = fault
        && !RELEASE_FAULTS.contains(&fault)
    {
        return Err(StampError::UnknownFault(fault.to_owned()));
    }
    let text = ReleaseStamp {
        version: version.to_owned(),
        fault: fault.map(str::to_owned),
    }
    .to_string();
    if text.len() > STAMP_CAPACITY {
        return Err(StampError::TooLong(text));
    }
    let offset = find_marker(binary, 0).ok_or(StampError::NoSlot)?;
    if let Some(second) = find_marker(binary, offset + 1) {
        return Err(StampError::AmbiguousSlot {
            first: offset,
            second,
        });
    }
    if binary.len() < offset + STAMP_SLOT_LEN {
        return Err(StampError::TruncatedSlot { offset });
    }
    let mut stamped = binary.to_vec();
    let room = &mut stamped[offset + STAMP_MARKER.len()..offset + STAMP_SLOT_LEN];
    room.fill(0);
    room[..text.len()].copy_from_slice(text.as_bytes());
    Ok(stamped)
}

/// Where [`STAMP_MARKER`] next occurs in `bytes`, from `start` on.
fn find_marker(bytes: &[u8], start: usize) -> Option<usize> {
    let (&first, rest) = STAMP_MARKER.split_first()?;
    let mut from = start;
    while let Some(found) = bytes.get(from..)?.iter().position(|&byte| byte == first) {
        let at = from + found;
        if bytes.get(at + 1..at + STAMP_MARKER.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Prints what rkt 1.x's `rkt version` prints. There is no Go here, and the `Go Version` line says so rather than
/// invent a Go release.
pub fn print(out: &mut impl Write, version: &str) -> std::io::Result<()> {
    writeln!(out, "rkt Version: {version}")?;
    writeln!(out, "appc Version: {APPC_VERSION}")?;
    writeln!(out, "Go Version: rktnetes stand-in (Rust)")?;
    writeln!(out, "Go OS/Arch: {}/{}", std::env::consts::OS, go_arch())?;
    writeln!(out, "Features: -TPM +SDJOURNAL")
}

/// The machine's architecture as Go names it (`GOARCH`), which is what rkt prints.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_rkt_1_version_lines() {
        let mut out = Vec::new();
        print(&mut out, "1.9.1").unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], "rkt Version: 1.9.1");
        assert_eq!(lines[1], "appc Version: 0.8.11");
        assert!(lines[3].starts_with("Go OS/Arch: linux/"), "{}", lines[3]);
        assert_eq!(lines[4], "Features: -TPM +SDJOURNAL");
    }

    /// A pretend binary: some code, the unstamped slot at byte 100, some more.
    fn fake_binary() -> Vec<u8> {
        let mut binary = vec![0x90; 100];
        binary.extend_from_slice(&unstamped_slot());
        binary.extend_from_slice(b"RKTNETES-STANDIN after the slot");
        binary
    }

    fn slot_of(binary: &[u8]) -> &[u8] {
        &binary[100..100 + STAMP_SLOT_LEN]
    }

    #[test]
    fn this_build_is_unstamped() {
        assert_eq!(release_stamp(), None);
        assert_eq!(read_slot(&unstamped_slot()), None);
    }

    #[test]
    fn a_stamp_is_written_into_the_slot_and_nothing_else_changes() {
        let binary = fake_binary();
        let stamped = stamp(&binary, "1.29.0", None).unwrap();
        assert_eq!(stamped.len(), binary.len());
        assert_eq!(stamped[..100], binary[..100]);
        assert_eq!(
            stamped[100 + STAMP_SLOT_LEN..],
            binary[100 + STAMP_SLOT_LEN..]
        );
        let slot = slot_of(&stamped);
        assert!(slot.starts_with(b"RKTNETES-STANDIN-RELEASE-STAMP:1.29.0\0"));
        assert_eq!(
            read_slot(slot),
            Some(ReleaseStamp {
                version: "1.29.0".to_owned(),
                fault: None
            })
        );
    }

    #[test]
    fn a_stamp_may_carry_a_fault_and_a_stamped_binary_can_be_stamped_again() {
        let broken = stamp(&fake_binary(), "1.30.0-rc.1+build.7", Some("exit")).unwrap();
        let read = read_slot(slot_of(&broken)).unwrap();
        assert_eq!(read.version, "1.30.0-rc.1+build.7");
        assert_eq!(read.fault.as_deref(), Some("exit"));
        assert_eq!(read.to_string(), "1.30.0-rc.1+build.7 exit");
        // A shorter stamp leaves nothing of the longer one behind.
        let again = stamp(&broken, "1.9.1", None).unwrap();
        assert!(slot_of(&again).starts_with(b"RKTNETES-STANDIN-RELEASE-STAMP:1.9.1\0"));
        assert!(
            slot_of(&again)[STAMP_MARKER.len() + 5..]
                .iter()
                .all(|&byte| byte == 0)
        );
    }

    #[test]
    fn a_stamp_fills_the_slot_at_most() {
        let longest = "1".repeat(STAMP_CAPACITY);
        let stamped = stamp(&fake_binary(), &longest, None).unwrap();
        assert_eq!(read_slot(slot_of(&stamped)).unwrap().version, longest);
        let too_long = "1".repeat(STAMP_CAPACITY - 4);
        assert_eq!(
            stamp(&fake_binary(), &too_long, Some("exit")),
            Err(StampError::TooLong(format!("{too_long} exit")))
        );
    }

    #[test]
    fn a_binary_without_exactly_one_whole_slot_is_refused() {
        assert_eq!(
            stamp(b"no slot here RKTNETES-STANDIN", "1.29.0", None),
            Err(StampError::NoSlot)
        );
        let mut twice = fake_binary();
        twice.extend_from_slice(&unstamped_slot());
        let second = 100 + STAMP_SLOT_LEN + "RKTNETES-STANDIN after the slot".len();
        assert_eq!(
            stamp(&twice, "1.29.0", None),
            Err(StampError::AmbiguousSlot { first: 100, second })
        );
        let mut cut = fake_binary();
        cut.truncate(100 + STAMP_MARKER.len() + 3);
        assert_eq!(
            stamp(&cut, "1.29.0", None),
            Err(StampError::TruncatedSlot { offset: 100 })
        );
    }

    #[test]
    fn only_a_plain_version_and_a_known_fault_are_stamped() {
        for version in ["", "1.29.0 exit", "v1/../1", "1.29.0\0", "1.29.0\n"] {
            assert_eq!(
                stamp(&fake_binary(), version, None),
                Err(StampError::Version(version.to_owned()))
            );
        }
        assert_eq!(
            stamp(&fake_binary(), "1.29.0", Some("crash")),
            Err(StampError::UnknownFault("crash".to_owned()))
        );
    }
}
