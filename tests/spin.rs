//! Spin control: `Spin::Never` sleeps at once, `Spin::UpTo` spins.

mod common;

use std::time::Duration;

use common::watchdog;
use shmkit::{Error, Lock, Pipe, Queue, Spin};

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cpu_of(f: impl FnOnce()) -> Duration {
    let t0 = thread_cpu();
    f();
    thread_cpu() - t0
}

#[test]
fn never_spin_sleeps_and_up_to_spins() {
    let _w = watchdog(Duration::from_secs(60));
    let q = Queue::create_unique(1, 8).unwrap();
    q.set_spin(Spin::Never);
    let never = cpu_of(|| {
        for _ in 0..10 {
            assert!(matches!(
                q.get_timeout(Duration::from_millis(20)),
                Err(Error::Timeout { .. })
            ));
        }
    });
    q.set_spin(Spin::UpTo(Duration::from_millis(50)));
    assert_eq!(q.spin(), Spin::UpTo(Duration::from_millis(50)));
    let spun = cpu_of(|| {
        assert!(matches!(
            q.get_timeout(Duration::from_millis(100)),
            Err(Error::Timeout { .. })
        ));
    });
    // 200 ms of waiting without spinning costs next to no CPU; one 50 ms
    // spin costs a good part of it even on a busy machine.
    assert!(
        never < spun,
        "never-spin used {never:?}, a 50 ms spin {spun:?}"
    );

    let mut a = Pipe::create_unique().unwrap();
    let _b = Pipe::open(a.name()).unwrap();
    a.set_spin(Spin::Never);
    assert_eq!(a.spin(), Spin::Never);
    let never = cpu_of(|| {
        for _ in 0..10 {
            assert!(matches!(
                a.recv_timeout(Duration::from_millis(20)),
                Err(Error::Timeout { .. })
            ));
        }
    });
    a.set_spin(Spin::UpTo(Duration::from_millis(50)));
    let spun = cpu_of(|| {
        assert!(matches!(
            a.recv_timeout(Duration::from_millis(100)),
            Err(Error::Timeout { .. })
        ));
    });
    assert!(
        never < spun,
        "never-spin used {never:?}, a 50 ms spin {spun:?}"
    );
    a.set_spin(Spin::Adaptive);
    assert_eq!(a.spin(), Spin::Adaptive);
}

#[test]
fn a_lock_spins_as_its_handle_says() {
    let _w = watchdog(Duration::from_secs(60));
    let lock = Lock::create_unique().unwrap();
    assert_eq!(lock.spin(), Spin::Adaptive);
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let name = lock.name().to_owned();
        s.spawn(move || {
            let other = Lock::open(&name).unwrap();
            let g = other.lock().unwrap();
            held_tx.send(()).unwrap();
            done_rx.recv().unwrap();
            drop(g);
        });
        held_rx.recv().unwrap();
        // First the spin: nobody sleeps on the lock yet, so it spins for
        // the whole 50 ms (a sleeper would end the spin early).
        lock.set_spin(Spin::UpTo(Duration::from_millis(50)));
        assert_eq!(lock.spin(), Spin::UpTo(Duration::from_millis(50)));
        let spun = cpu_of(|| {
            assert!(matches!(
                lock.lock_timeout(Duration::from_millis(100)),
                Err(Error::Timeout { .. })
            ));
        });
        lock.set_spin(Spin::Never);
        let never = cpu_of(|| {
            for _ in 0..10 {
                assert!(matches!(
                    lock.lock_timeout(Duration::from_millis(20)),
                    Err(Error::Timeout { .. })
                ));
            }
        });
        assert!(
            never < spun,
            "never-spin used {never:?}, a 50 ms spin {spun:?}"
        );
        done_tx.send(()).unwrap();
    });
    // Never-spin still takes the lock once it is free.
    drop(lock.lock().unwrap());
}
