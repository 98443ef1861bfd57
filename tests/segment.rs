//! The segment layer: names, create/open, header validation, init protocol,
//! modes and lifetime, with real child processes where it matters.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::{dispatch, spawn, unique_name, watchdog, Cleanup};
use shmkit::{Array, Error, Event, Lock, Options, Segment, Value};

#[test]
fn child() {
    dispatch(&[
        ("hang_in_init", hang_in_init),
        ("race_create_or_open", race_create_or_open),
        ("write_after_unlink", write_after_unlink),
        ("create_and_hang", create_and_hang),
    ]);
}

fn shm_path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

/// Overwrites `bytes` at `offset` of the object, as a hostile process would.
fn scribble(name: &str, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn bad_names_are_refused_before_any_syscall() {
    let long = "a".repeat(201);
    for name in [
        "",
        "a/b",
        "/x",
        "nul\0x",
        ".",
        "..",
        long.as_str(),
        "sp ace",
        "é",
    ] {
        match Segment::create(name, 8) {
            Err(Error::InvalidName { .. }) => {}
            other => panic!("{name:?}: {other:?}"),
        }
        assert!(
            matches!(Segment::open(name), Err(Error::InvalidName { .. })),
            "{name:?}"
        );
        assert!(
            matches!(shmkit::unlink(name), Err(Error::InvalidName { .. })),
            "{name:?}"
        );
        // Nothing reached the file system.
        if !name.is_empty()
            && !name.contains('\0')
            && !name.contains('/')
            && name != "."
            && name != ".."
        {
            assert!(!std::path::Path::new(&shm_path(name)).exists());
        }
    }
    let ok = "A-z_0.9".repeat(28); // 196 bytes of allowed characters
    let seg = Segment::create(&ok, 8).unwrap();
    assert_eq!(seg.name(), ok);
}

#[test]
fn create_twice_open_missing_and_bad_lengths() {
    let name = unique_name("twice");
    let _c = Cleanup(vec![name.clone()]);
    let seg = Segment::create(&name, 16).unwrap();
    assert!(matches!(
        Segment::create(&name, 16),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(Segment::open(&name).unwrap().len(), 16);
    drop(seg);
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
    let other = unique_name("len");
    let _c2 = Cleanup(vec![other.clone()]);
    for len in [0, shmkit::MAX_LEN, usize::MAX] {
        match Segment::create(&other, len) {
            Err(Error::InvalidArgument(_)) => {}
            r => panic!("len {len}: {r:?}"),
        }
        assert!(
            !std::path::Path::new(&shm_path(&other)).exists(),
            "len {len} left a file"
        );
    }
}

#[test]
fn unlink_twice_is_not_found() {
    let seg = Segment::create_unique(8).unwrap();
    seg.keep();
    let name = seg.name().to_owned();
    drop(seg);
    shmkit::unlink(&name).unwrap();
    assert!(matches!(shmkit::unlink(&name), Err(Error::NotFound { .. })));
}

fn opened_as_lock(name: &str) -> Error {
    Lock::open(name).expect_err("a forged header must be refused")
}

#[test]
fn bad_headers_give_typed_errors() {
    // Truncated: the object is shorter than its header says.
    let lock = Lock::create_unique().unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(lock.name()))
        .unwrap();
    f.set_len(64 + 8).unwrap();
    assert!(matches!(
        opened_as_lock(lock.name()),
        Error::Corrupted { .. }
    ));
    f.set_len(10).unwrap();
    assert!(matches!(
        opened_as_lock(lock.name()),
        Error::Corrupted { .. }
    ));

    let lock = Lock::create_unique().unwrap();
    scribble(lock.name(), 0, b"NOTSHMKT");
    assert!(matches!(
        opened_as_lock(lock.name()),
        Error::Corrupted { .. }
    ));

    let lock = Lock::create_unique().unwrap();
    scribble(lock.name(), 8, &7u32.to_ne_bytes());
    match opened_as_lock(lock.name()) {
        Error::VersionMismatch {
            expected, found: 7, ..
        } if expected == shmkit::raw::header::FORMAT_VERSION => {}
        e => panic!("{e:?}"),
    }

    let lock = Lock::create_unique().unwrap();
    scribble(lock.name(), 12, &99u32.to_ne_bytes());
    assert!(matches!(
        opened_as_lock(lock.name()),
        Error::WrongKind { .. }
    ));
    let ev = Event::create_unique().unwrap();
    assert!(matches!(
        opened_as_lock(ev.name()),
        Error::WrongKind {
            expected: "Lock",
            ..
        }
    ));

    let v = Value::<u64>::create_unique(1).unwrap();
    assert!(matches!(
        Value::<u32>::open(v.name()),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        Value::<i64>::open(v.name()),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        Array::<u64>::open(v.name()),
        Err(Error::WrongKind { .. })
    ));
    scribble(v.name(), 24, &0xdead_beefu64.to_ne_bytes());
    assert!(matches!(
        Value::<u64>::open(v.name()),
        Err(Error::TypeMismatch { .. })
    ));

    // An Array whose recorded length does not match its bytes.
    let a = Array::<u32>::create_unique(4, 0).unwrap();
    scribble(a.name(), 56, &1_000_000u64.to_ne_bytes());
    assert!(matches!(
        Array::<u32>::open(a.name()),
        Err(Error::Corrupted { .. })
    ));
    scribble(a.name(), 56, &u64::MAX.to_ne_bytes());
    assert!(matches!(
        Array::<u32>::open(a.name()),
        Err(Error::Corrupted { .. })
    ));

    // Not a shmkit object at all, and never initialised: an error within the bound.
    let name = unique_name("foreign");
    let _c = Cleanup(vec![name.clone()]);
    std::fs::write(shm_path(&name), vec![0u8; 4096]).unwrap();
    let opts = Options::new().init_timeout(Duration::from_millis(100));
    let t = Instant::now();
    assert!(matches!(
        Segment::open_with(&name, &opts),
        Err(Error::Corrupted { .. })
    ));
    assert!(t.elapsed() >= Duration::from_millis(100));
}

fn hang_in_init(args: &[String]) {
    let ready = Event::open(&args[1]).unwrap();
    let _seg = Segment::create_init(&args[0], 64, &Options::new(), |_| {
        ready.set();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

#[test]
fn creator_killed_before_ready_is_reported() {
    let _w = watchdog(Duration::from_secs(60));
    let name = unique_name("hang");
    let _c = Cleanup(vec![name.clone()]);
    let ready = Event::create_unique().unwrap();
    let child = spawn("hang_in_init", &[&name, ready.name()]);
    assert!(
        ready.wait_timeout(Duration::from_secs(30)).unwrap(),
        "child never reached init"
    );
    // While it lives, an opener waits out its bound and reports a timeout.
    let opts = Options::new().init_timeout(Duration::from_millis(50));
    assert!(matches!(
        Segment::open_with(&name, &opts),
        Err(Error::Timeout { .. })
    ));
    let pid = child.pid();
    child.kill();
    let opts = Options::new().init_timeout(Duration::from_secs(5));
    match Segment::open_with(&name, &opts) {
        Err(Error::CreatorDied { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
}

fn race_create_or_open(args: &[String]) {
    let prefix = &args[0];
    let go = Event::open(&args[1]).unwrap();
    let results = Array::<u8>::open(&args[2]).unwrap();
    go.wait().unwrap();
    for i in 0..100 {
        let name = format!("{prefix}-{i}");
        let created = create_or_open(&name);
        results.set(i, created as u8 + 1).unwrap();
    }
}

/// Returns whether this call created the value; either way checks it is
/// the initialised one.
fn create_or_open(name: &str) -> bool {
    loop {
        match Value::<u64>::create(name, 0x5eed) {
            Ok(v) => {
                v.keep();
                return true;
            }
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("create: {e}"),
        }
        match Value::<u64>::open(name) {
            Ok(v) => {
                assert_eq!(v.load(), 0x5eed);
                return false;
            }
            Err(Error::NotFound { .. }) => continue,
            Err(e) => panic!("open: {e}"),
        }
    }
}

#[test]
fn two_processes_race_create_or_open() {
    let _w = watchdog(Duration::from_secs(120));
    let prefix = unique_name("race");
    let _c = Cleanup((0..100).map(|i| format!("{prefix}-{i}")).collect());
    let go = Event::create_unique().unwrap();
    let results = Array::<u8>::create_unique(100, 0).unwrap();
    let child = spawn("race_create_or_open", &[&prefix, go.name(), results.name()]);
    go.set();
    let mine: Vec<bool> = (0..100)
        .map(|i| create_or_open(&format!("{prefix}-{i}")))
        .collect();
    child.join();
    let theirs = results.to_vec();
    for i in 0..100 {
        assert!(theirs[i] != 0, "child skipped {i}");
        let child_created = theirs[i] == 2;
        assert!(
            mine[i] != child_created,
            "name {i}: exactly one must create (parent {}, child {child_created})",
            mine[i]
        );
    }
}

fn mode_of(name: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(shm_path(name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn mode_is_exact_whatever_the_umask() {
    // umask is per process, and tests run on threads: set it only here, and
    // restore it.
    for mask in [0o000, 0o077, 0o022] {
        // SAFETY: umask has no preconditions.
        let old = unsafe { libc::umask(mask) };
        let a = Segment::create_unique(8).unwrap();
        let b = Segment::create_unique_with(8, &Options::new().mode(0o640)).unwrap();
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        assert_eq!(mode_of(a.name()), 0o600, "umask {mask:o}");
        assert_eq!(a.mode().unwrap(), 0o600);
        assert_eq!(mode_of(b.name()), 0o640, "umask {mask:o}");
    }
}

#[test]
fn another_users_segment_is_refused_unless_allowed() {
    let seg = Segment::create_unique(8).unwrap();
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: cannot chown, checking only the same-owner path");
        Segment::open(seg.name()).unwrap();
        return;
    }
    let path = std::ffi::CString::new(shm_path(seg.name())).unwrap();
    // SAFETY: `path` is a valid C string.
    assert_eq!(unsafe { libc::chown(path.as_ptr(), 12345, 12345) }, 0);
    assert!(matches!(
        Segment::open(seg.name()),
        Err(Error::PermissionDenied { .. })
    ));
    Segment::open_with(seg.name(), &Options::new().allow_other_owner(true)).unwrap();
}

fn write_after_unlink(args: &[String]) {
    let v = Value::<u64>::open(&args[0]).unwrap();
    let go = Event::open(&args[1]).unwrap();
    let done = Event::open(&args[2]).unwrap();
    let done = done;
    done.keep();
    v.store(1);
    go.wait().unwrap();
    // The creator has dropped its handle: the name is gone, the mapping lives.
    assert!(matches!(
        Value::<u64>::open(&args[0]),
        Err(Error::NotFound { .. })
    ));
    assert_eq!(v.load(), 2);
    v.store(3);
    assert_eq!(v.fetch_add(1), 3);
    done.set();
}

#[test]
fn mapping_outlives_the_name() {
    let _w = watchdog(Duration::from_secs(60));
    let v = Value::<u64>::create_unique(0).unwrap();
    let keep_open = Value::<u64>::open(v.name()).unwrap();
    let go = Event::create_unique().unwrap();
    let done = Event::create_unique().unwrap();
    let name = v.name().to_owned();
    let child = spawn("write_after_unlink", &[&name, go.name(), done.name()]);
    assert!(common::wait_for(Duration::from_secs(30), || v.load() == 1));
    v.store(2);
    drop(v);
    assert!(!std::path::Path::new(&shm_path(&name)).exists());
    go.set();
    assert!(done.wait_timeout(Duration::from_secs(30)).unwrap());
    child.join();
    assert_eq!(keep_open.load(), 4);
}

#[test]
fn creator_info_and_keep() {
    let seg = Segment::create_unique(8).unwrap();
    assert_eq!(seg.creator_pid(), std::process::id());
    assert!(seg.creator_alive());
    assert!(seg.unlinks_on_drop());
    seg.keep();
    let name = seg.name().to_owned();
    drop(seg);
    let again = Segment::open(&name).unwrap();
    assert!(!again.unlinks_on_drop());
    shmkit::unlink(&name).unwrap();
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn failed_init_leaves_nothing() {
    let name = unique_name("initfail");
    let r = Segment::create_init(&name, 8, &Options::new(), |_| {
        Err(Error::InvalidArgument("no".into()))
    });
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
    assert!(matches!(Segment::open(&name), Err(Error::NotFound { .. })));
}

#[test]
fn inspect_and_list_find_segments_and_their_creators() {
    let _w = watchdog(Duration::from_secs(60));
    let lock = Lock::create_unique().unwrap();
    let v = Value::<u32>::create_unique(1).unwrap();
    let info = shmkit::inspect(lock.name()).unwrap();
    assert_eq!(
        (info.kind, info.creator_pid, info.creator_alive),
        ("Lock", std::process::id(), true)
    );
    assert_eq!(shmkit::inspect(v.name()).unwrap().kind, "Value");
    let all = shmkit::list().unwrap();
    assert!(all.iter().any(|s| s.name == lock.name()));
    assert!(all.iter().any(|s| s.name == v.name() && s.kind == "Value"));
    // A segment whose creator died is reported so.
    let name = unique_name("orphan");
    let _c = Cleanup(vec![name.clone()]);
    let ready = Event::create_unique().unwrap();
    let child = spawn("create_and_hang", &[&name, ready.name()]);
    assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
    assert!(shmkit::inspect(&name).unwrap().creator_alive);
    child.kill();
    let info = shmkit::inspect(&name).unwrap();
    assert_eq!(info.kind, "Event");
    assert!(!info.creator_alive);
    // Not a shmkit object: refused.
    let foreign = unique_name("foreign2");
    let _c2 = Cleanup(vec![foreign.clone()]);
    std::fs::write(shm_path(&foreign), vec![7u8; 4096]).unwrap();
    assert!(shmkit::inspect(&foreign).is_err());
    assert!(!shmkit::list().unwrap().iter().any(|s| s.name == foreign));
}

fn create_and_hang(args: &[String]) {
    let ev = Event::create(&args[0]).unwrap();
    ev.keep();
    Event::open(&args[1]).unwrap().set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Found by the `segment_open` fuzz target: a valid header whose payload is
/// too short for the core (length field adjusted to match) made the first
/// use panic.
#[test]
fn payload_too_short_for_its_core_is_corrupted() {
    for (is_lock, cut) in [(true, 64 + 8), (false, 64 + 2)] {
        let name = if is_lock {
            let l = Lock::create_unique().unwrap();
            l.keep();
            l.name().to_owned()
        } else {
            let e = Event::create_unique().unwrap();
            e.keep();
            e.name().to_owned()
        };
        let _c = Cleanup(vec![name.clone()]);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(shm_path(&name))
            .unwrap();
        f.set_len(cut).unwrap();
        scribble(&name, 32, &cut.to_ne_bytes());
        if is_lock {
            assert!(matches!(Lock::open(&name), Err(Error::Corrupted { .. })));
        } else {
            assert!(matches!(Event::open(&name), Err(Error::Corrupted { .. })));
        }
    }
}

/// Free and total bytes of /dev/shm (statvfs).
fn dev_shm_space() -> (u64, u64) {
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a writable out-pointer.
    assert_eq!(unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) }, 0);
    let f = st.f_frsize as u64;
    (st.f_bavail as u64 * f, st.f_blocks as u64 * f)
}

/// Issue 14: a full /dev/shm is an error at create, never a SIGBUS later.
#[test]
fn a_segment_larger_than_dev_shm_is_no_space_at_create_and_leaves_nothing() {
    let (free, total) = dev_shm_space();
    let want = free.saturating_mul(2);
    // Only when the request exceeds the whole filesystem does tmpfs refuse
    // it before allocating anything; otherwise this test would fill memory.
    if want <= total || want >= shmkit::MAX_LEN as u64 {
        eprintln!("skipped: /dev/shm free {free} of {total}");
        return;
    }
    let name = common::unique_name("nospace");
    let _c = common::Cleanup(vec![name.clone()]);
    match shmkit::Segment::create(&name, want as usize) {
        Err(shmkit::Error::NoSpace { name: n, size }) => {
            assert_eq!(n, name);
            assert!(size >= want);
        }
        other => panic!("create of {want} bytes with {free} free: {other:?}"),
    }
    assert!(
        matches!(
            shmkit::Segment::open(&name),
            Err(shmkit::Error::NotFound { .. })
        ),
        "a failed create leaves no segment behind"
    );
    // Normal creation still works, and the memory is usable.
    let seg = shmkit::Segment::create(&name, 1 << 20).unwrap();
    // SAFETY: the payload is 1 MiB long and only this test uses it.
    unsafe { std::ptr::write_bytes(seg.as_ptr(), 0xa5, 1 << 20) };
}
