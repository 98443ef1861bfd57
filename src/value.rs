//! `Value<T>`: one shared plain-data value with a lock.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;

use crate::error::{Error, OrNamed, Result};
use crate::handle::{named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::{RawLock, RawLockGuard, Spin};
use crate::segment::{Options, Segment, Spec};
use crate::sync::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// Payload layout shared by `Value` and `Array`: a `RawLock` at offset 0,
/// the data at the first multiple of `align_of::<T>()` (at least 8) past it.
pub(crate) fn data_offset<T>() -> usize {
    let align = std::mem::align_of::<T>().max(8);
    RawLock::required_size().div_ceil(align) * align
}

/// The largest alignment a payload type may have: segments put the payload
/// 64 bytes into a page.
pub(crate) const MAX_ALIGN: usize = 64;

/// Locks for one read or write (see `RawLock::lock_one_shot`) the lock of
/// the segment `seg`. The only error of an untimed lock is `Deadlock`, and
/// that only when this thread's own record says it holds the lock (a guard
/// of this thread, through any handle on the object, exists or was leaked):
/// a documented panic of the calling method, a programming error like a
/// `RefCell` borrowed twice. Bytes written by a peer (a forged "owner is
/// you") can only make it wait.
pub(crate) fn lock_or_panic<'a>(lock: &'a RawLock, seg: &Segment, kind: &str) -> RawLockGuard<'a> {
    match lock.lock_one_shot(seg.object_id()) {
        Ok(g) => g,
        Err(e) => panic!("{kind} {:?}: {e} (use the guard you hold)", seg.name()),
    }
}

pub(crate) fn check_align<T>(name: &str) -> Result<()> {
    if std::mem::align_of::<T>() > MAX_ALIGN {
        return Err(Error::InvalidArgument(format!(
            "segment {name:?}: {} needs {}-byte alignment; shmkit supports up to {MAX_ALIGN}",
            std::any::type_name::<T>(),
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

/// Reads a `T` at `p` atomically when it is 1, 2, 4 or 8 bytes with matching
/// alignment; returns `None` for other types.
///
/// # Safety
/// `p` must be valid for reads of `T`, aligned, and only accessed atomically
/// by concurrent writers when `T` has one of those sizes.
unsafe fn atomic_read<T: Pod>(p: *const T) -> Option<T> {
    macro_rules! read {
        ($a:ty, $u:ty) => {{
            // SAFETY: `T` has the size and alignment of `$u` (checked by the
            // match below), `p` is valid and aligned (caller), and concurrent
            // writers use atomics of the same width.
            let bits = unsafe { &*(p as *const $a) }.load(Ordering::Acquire);
            Some(bytemuck::cast::<$u, T>(bits))
        }};
    }
    match (std::mem::size_of::<T>(), std::mem::align_of::<T>()) {
        (1, 1) => read!(AtomicU8, u8),
        (2, 2) => read!(AtomicU16, u16),
        (4, 4) => read!(AtomicU32, u32),
        (8, 8) => read!(AtomicU64, u64),
        _ => None,
    }
}

/// Writes `v` at `p`: atomically for 1/2/4/8-byte types, else by a plain copy.
///
/// # Safety
/// `p` must be valid for writes of `T` and aligned; for other sizes the
/// caller must hold the lock that excludes every other reader and writer.
unsafe fn write<T: Pod>(p: *mut T, v: T) {
    macro_rules! store {
        ($a:ty, $u:ty) => {{
            // SAFETY: as in `atomic_read`.
            unsafe { &*(p as *const $a) }.store(bytemuck::cast::<T, $u>(v), Ordering::Release)
        }};
    }
    match (std::mem::size_of::<T>(), std::mem::align_of::<T>()) {
        (1, 1) => store!(AtomicU8, u8),
        (2, 2) => store!(AtomicU16, u16),
        (4, 4) => store!(AtomicU32, u32),
        (8, 8) => store!(AtomicU64, u64),
        // SAFETY: valid, aligned, and exclusively ours under the lock (caller).
        _ => unsafe { p.write(v) },
    }
}

/// One shared value of a plain-data type `T`, with a lock (Python's
/// `multiprocessing.Value`).
///
/// - [`load`](Value::load) is lock-free for 1-, 2-, 4- and 8-byte types and
///   takes the lock for larger ones, so it never sees a torn value;
/// - [`store`](Value::store) takes the lock;
/// - [`lock`](Value::lock) gives a guard to read-modify-write under the lock;
///   it works on a copy and writes it back when dropped, so a holder that
///   dies mid-update leaves the old value, and the next locker is told
///   ([`ValueGuard::owner_died`]); [`lock_timeout`](Value::lock_timeout)
///   and [`try_lock`](Value::try_lock) bound the wait (as on
///   [`Lock`](crate::Lock)), and are the timed forms of `load` and `store`;
/// - for the primitive integers, [`fetch_add`](Value::fetch_add),
///   [`fetch_sub`](Value::fetch_sub), [`swap`](Value::swap) and
///   [`compare_exchange`](Value::compare_exchange) are lock-free atomics.
///   They do not take the lock: mixing them with guard updates on the same
///   value can lose updates, as it would with any lock.
///
/// `open` checks the payload type: a `Value<u64>` opened as `Value<u32>` is
/// [`Error::TypeMismatch`].
///
/// ```
/// use shmkit::Value;
///
/// let v = Value::<i64>::create_unique(10)?;
/// let w = Value::<i64>::open(v.name())?; // as another process would
/// w.fetch_add(5);
/// {
///     let mut g = v.lock()?;
///     *g *= 2;
/// }
/// assert_eq!(w.load(), 30);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Value<T: Pod>(Named<ValueCore<T>>);

/// A value's payload: a [`RawLock`], then the `T` at `data_offset::<T>()`.
pub(crate) struct ValueCore<T>(PhantomData<T>);

impl<T: Pod> Core for ValueCore<T> {
    type View = &'static RawLock;

    fn spec() -> Spec {
        Spec::typed::<T>(Kind::Value, 0)
    }

    fn precheck(name: &str) -> Result<()> {
        check_align::<T>(name)
    }

    unsafe fn attach(p: *mut u8, len: usize, _aux: u64, _created: bool) -> Result<Self::View> {
        if len < Value::<T>::payload_len() {
            return Err(Error::corrupted("", "too short for its value"));
        }
        // SAFETY: the caller's contract is `RawLock::attach`'s: the payload
        // starts with the lock, initialised before the header was published.
        unsafe { RawLock::attach(p, len) }.map_err(|e| Error::corrupted("", e.to_string()))
    }
}

named_handle! {
    impl[T: Pod] Value<T> {
        what: "value",
        path: "shmkit::Value::<u64>",
        make: "shmkit::Value::create_unique(7u64)?",
        open_errors: "[`Error::TypeMismatch`](crate::Error::TypeMismatch) if it holds another payload type, [`Error::Corrupted`](crate::Error::Corrupted) for a payload too short for a `T`, [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a `T` aligned to more than 64 bytes",
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("name", &self.name())
            .field("value", &self.load())
            .finish()
    }
}

impl<T: Pod> Value<T> {
    fn payload_len() -> usize {
        data_offset::<T>() + std::mem::size_of::<T>().max(1)
    }

    fn from_named(n: Named<ValueCore<T>>) -> Value<T> {
        Value(n)
    }

    fn named(&self) -> &Named<ValueCore<T>> {
        &self.0
    }

    /// Names this value and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.named().at("Value", op)
    }

    fn create_inner(name: Option<&str>, init: T, opts: &Options) -> Result<Value<T>> {
        Named::create(name, 0, Self::payload_len(), opts, Self::init(init)).map(Value)
    }

    fn init(init: T) -> impl Fn(*mut u8, usize) -> Result<()> {
        move |p, len| {
            // SAFETY: `p` is the fresh, unpublished payload of `len` >=
            // payload_len() bytes, 64-aligned; nobody else uses it yet.
            unsafe {
                RawLock::init_in(p, len)?;
                p.add(data_offset::<T>()).cast::<T>().write(init);
            }
            Ok(())
        }
    }

    /// Creates a value named `name` holding `init`.
    ///
    /// # Errors
    /// As [`Segment::create`]; [`Error::InvalidArgument`] if `T` needs more
    /// than 64-byte alignment.
    ///
    /// ```
    /// # let name = format!("shmkit-doc-value-{}", std::process::id());
    /// let v = shmkit::Value::create(&name, 3.5f64)?;
    /// assert_eq!(v.load(), 3.5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str, init: T) -> Result<Value<T>> {
        Value::create_inner(Some(name), init, &Options::new())
    }

    /// [`create`](Value::create) with [`Options`].
    ///
    /// ```
    /// # let name = format!("shmkit-doc-valuew-{}", std::process::id());
    /// let v = shmkit::Value::create_with(&name, 1u8, &shmkit::Options::new().mode(0o640))?;
    /// # let _ = v;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, init: T, opts: &Options) -> Result<Value<T>> {
        Value::create_inner(Some(name), init, opts)
    }

    /// Creates a value under a fresh unique name.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(7u32)?;
    /// assert_eq!(v.load(), 7);
    /// // Opening it as another type is refused:
    /// assert!(matches!(shmkit::Value::<u64>::open(v.name()), Err(shmkit::Error::TypeMismatch { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique(init: T) -> Result<Value<T>> {
        Value::create_inner(None, init, &Options::new())
    }

    #[inline]
    fn raw_lock(&self) -> &'static RawLock {
        self.0.view()
    }

    #[inline]
    fn seg(&self) -> &Segment {
        self.0.seg()
    }

    fn data(&self) -> *mut T {
        // SAFETY: `ValueCore::attach` checked that the payload holds data_offset +
        // size_of::<T>() bytes; the offset is a multiple of T's alignment
        // (at most 64, the payload's alignment).
        unsafe { self.seg().as_ptr().add(data_offset::<T>()).cast::<T>() }
    }

    /// The current value. Lock-free for 1-, 2-, 4- and 8-byte types; larger
    /// ones are read under the lock, waiting for as long as it is held (a
    /// dead holder's lock is taken over within about 20 ms). For a bounded
    /// wait, read through [`lock_timeout`](Value::lock_timeout).
    ///
    /// # Panics
    /// For a type larger than 8 bytes, if the calling thread holds this
    /// value's lock (a [`ValueGuard`] of this thread, through any handle on
    /// the value): read the guard instead. Bytes a peer writes into the lock
    /// (its own stamp, ours, garbage) never make it panic; a forged live
    /// owner makes it wait.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique([1u32, 2, 3])?;
    /// assert_eq!(v.load(), [1, 2, 3]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn load(&self) -> T {
        // SAFETY: `data()` is valid and aligned; every writer of a small T
        // writes it atomically (`write`).
        if let Some(v) = unsafe { atomic_read(self.data()) } {
            return v;
        }
        let _g = self.lock_raw();
        // SAFETY: we hold the lock, which every writer of a large T holds.
        unsafe { self.data().read() }
    }

    /// Replaces the value, under the lock, waiting for as long as it is
    /// held (a dead holder's lock is taken over within about 20 ms). For a
    /// bounded wait, write through [`lock_timeout`](Value::lock_timeout).
    ///
    /// # Panics
    /// If the calling thread holds this value's lock (a [`ValueGuard`] of
    /// this thread, through any handle on the value): write through the
    /// guard instead. Bytes a peer writes into the lock never make it panic.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(1u16)?;
    /// v.store(9);
    /// assert_eq!(v.load(), 9);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn store(&self, value: T) {
        let _g = self.lock_raw();
        // SAFETY: valid and aligned; we hold the lock that every guard and
        // store holds; readers of small T read atomically.
        unsafe { write(self.data(), value) };
    }

    fn lock_raw(&self) -> RawLockGuard<'_> {
        lock_or_panic(self.raw_lock(), self.seg(), "Value")
    }

    fn guard<'a>(&'a self, inner: RawLockGuard<'a>) -> ValueGuard<'a, T> {
        // SAFETY: we hold the lock: no guard or store writes concurrently,
        // and small types are read atomically.
        let value = unsafe { atomic_read(self.data()) }.unwrap_or_else(|| {
            // SAFETY: as above; large types are only written under the lock.
            unsafe { self.data().read() }
        });
        ValueGuard {
            value,
            target: self.data(),
            inner,
        }
    }

    /// Takes the lock and returns a guard that derefs to a copy of the value;
    /// the copy is written back when the guard drops. Waits for as long as
    /// the lock is held (a dead holder's lock is taken over within about
    /// 20 ms); see [`lock_timeout`](Value::lock_timeout) and
    /// [`try_lock`](Value::try_lock) for bounded waits.
    ///
    /// # Errors
    /// [`Error::Deadlock`] if this thread already holds the lock (through
    /// this or another handle on the value).
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(0u64)?;
    /// {
    ///     let mut g = v.lock()?;
    ///     *g += 41;
    ///     *g += 1;
    /// }
    /// assert_eq!(v.load(), 42);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock(&self) -> Result<ValueGuard<'_, T>> {
        let inner = self
            .raw_lock()
            .lock_in(self.seg().object_id(), None, Spin::Adaptive)
            .or_named(self.at("lock"))?;
        Ok(self.guard(inner))
    }

    /// As [`lock`](Value::lock), but fails with [`Error::Timeout`] once
    /// `timeout` has passed (never earlier): the timed form of
    /// [`load`](Value::load) and [`store`](Value::store), for when a holder
    /// that lives but never lets go (or a peer that forges one) must not
    /// block the caller forever. A dead holder's lock is taken over even
    /// with a zero timeout.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Deadlock`] if this thread holds the lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// let v = shmkit::Value::create_unique([0u64; 4])?;
    /// *v.lock_timeout(Duration::from_millis(100))? = [1, 2, 3, 4]; // a timed store
    /// let now = *v.lock_timeout(Duration::from_millis(100))?; // a timed load
    /// assert_eq!(now, [1, 2, 3, 4]);
    /// let g = v.lock()?;
    /// std::thread::scope(|s| {
    ///     s.spawn(|| {
    ///         let r = v.lock_timeout(Duration::from_millis(10));
    ///         assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    ///     });
    /// });
    /// # drop(g);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> Result<ValueGuard<'_, T>> {
        let inner = self
            .raw_lock()
            .lock_in(self.seg().object_id(), Some(timeout), Spin::Adaptive)
            .or_named(self.at("lock_timeout"))?;
        Ok(self.guard(inner))
    }

    /// As [`lock`](Value::lock) if that needs no waiting (the lock is free,
    /// or its holder is dead); `None` if it is held, also by this thread.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a corrupted lock.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(1u8)?;
    /// let g = v.try_lock()?.expect("free");
    /// assert!(v.try_lock()?.is_none());
    /// assert_eq!(*g, 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<Option<ValueGuard<'_, T>>> {
        let inner = self
            .raw_lock()
            .try_lock_in(self.seg().object_id())
            .or_named(self.at("try_lock"))?;
        Ok(inner.map(|g| self.guard(g)))
    }
}

/// A copy of a [`Value`] taken under its lock; written back and unlocked
/// when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    value: T,
    target: *mut T,
    inner: RawLockGuard<'a>,
}

impl<T: Pod> ValueGuard<'_, T> {
    /// True when this acquisition took the lock over from a holder that
    /// died; the value is the last one written back before that.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(0u8)?;
    /// assert!(!v.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.inner.owner_died()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Pod> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: `target` points into the segment that `inner` borrows, so it
        // is mapped; we still hold the lock (`inner` drops after this body).
        unsafe { write(self.target, self.value) };
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValueGuard")
            .field("value", &self.value)
            .field("owner_died", &self.owner_died())
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The primitive integers, which [`Value`] updates with lock-free atomics.
///
/// Sealed: implemented for `u8`–`u64`, `i8`–`i64`, `usize` and `isize`.
///
/// The methods are the plumbing behind [`Value::fetch_add`] and friends.
pub trait AtomicValue: Pod + sealed::Sealed {
    /// Atomic fetch-add at `p`.
    ///
    /// # Safety
    /// `p` must be valid, aligned, and accessed only atomically by others.
    #[doc(hidden)]
    unsafe fn fetch_add_at(p: *mut Self, v: Self) -> Self;
    /// Atomic fetch-sub at `p`.
    ///
    /// # Safety
    /// As for `fetch_add_at`.
    #[doc(hidden)]
    unsafe fn fetch_sub_at(p: *mut Self, v: Self) -> Self;
    /// Atomic swap at `p`.
    ///
    /// # Safety
    /// As for `fetch_add_at`.
    #[doc(hidden)]
    unsafe fn swap_at(p: *mut Self, v: Self) -> Self;
    /// Atomic compare-exchange at `p`.
    ///
    /// # Safety
    /// As for `fetch_add_at`.
    #[doc(hidden)]
    unsafe fn compare_exchange_at(
        p: *mut Self,
        current: Self,
        new: Self,
    ) -> std::result::Result<Self, Self>;
}

macro_rules! atomic_value {
    ($($t:ty => $a:ty, $u:ty);* $(;)?) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicValue for $t {
            unsafe fn fetch_add_at(p: *mut Self, v: Self) -> Self {
                // SAFETY: `p` is valid and aligned (the caller's contract), and
                // `$t` and `$a` have the same size and alignment.
                let a = unsafe { &*(p as *const $a) };
                a.fetch_add(v as $u, Ordering::AcqRel) as $t
            }
            unsafe fn fetch_sub_at(p: *mut Self, v: Self) -> Self {
                // SAFETY: as in fetch_add_at.
                let a = unsafe { &*(p as *const $a) };
                a.fetch_sub(v as $u, Ordering::AcqRel) as $t
            }
            unsafe fn swap_at(p: *mut Self, v: Self) -> Self {
                // SAFETY: as in fetch_add_at.
                let a = unsafe { &*(p as *const $a) };
                a.swap(v as $u, Ordering::AcqRel) as $t
            }
            unsafe fn compare_exchange_at(p: *mut Self, current: Self, new: Self) -> std::result::Result<Self, Self> {
                // SAFETY: as in fetch_add_at.
                let a = unsafe { &*(p as *const $a) };
                a.compare_exchange(current as $u, new as $u, Ordering::AcqRel, Ordering::Acquire)
                    .map(|v| v as $t)
                    .map_err(|v| v as $t)
            }
        }
    )*};
}

atomic_value! {
    u8 => AtomicU8, u8; i8 => AtomicU8, u8;
    u16 => AtomicU16, u16; i16 => AtomicU16, u16;
    u32 => AtomicU32, u32; i32 => AtomicU32, u32;
    u64 => AtomicU64, u64; i64 => AtomicU64, u64;
}
#[cfg(target_pointer_width = "64")]
atomic_value! { usize => AtomicU64, u64; isize => AtomicU64, u64; }

impl<T: AtomicValue> Value<T> {
    /// Adds `v` (wrapping) and returns the previous value, lock-free.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(1i32)?;
    /// assert_eq!(v.fetch_add(2), 1);
    /// assert_eq!(v.load(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn fetch_add(&self, v: T) -> T {
        // SAFETY: `data()` is valid and aligned for T while `self` lives;
        // every access to a small T is atomic.
        unsafe { T::fetch_add_at(self.data(), v) }
    }

    /// Subtracts `v` (wrapping) and returns the previous value, lock-free.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(5u8)?;
    /// assert_eq!(v.fetch_sub(2), 5);
    /// assert_eq!(v.load(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn fetch_sub(&self, v: T) -> T {
        // SAFETY: `data()` is valid and aligned for T while `self` lives;
        // every access to a small T is atomic.
        unsafe { T::fetch_sub_at(self.data(), v) }
    }

    /// Stores `v` and returns the previous value, lock-free.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(5u64)?;
    /// assert_eq!(v.swap(6), 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn swap(&self, v: T) -> T {
        // SAFETY: `data()` is valid and aligned for T while `self` lives;
        // every access to a small T is atomic.
        unsafe { T::swap_at(self.data(), v) }
    }

    /// Stores `new` if the value is `current`; returns the previous value,
    /// `Ok` if it was `current`, `Err` otherwise. Lock-free.
    ///
    /// ```
    /// let v = shmkit::Value::create_unique(5u64)?;
    /// assert_eq!(v.compare_exchange(5, 6), Ok(5));
    /// assert_eq!(v.compare_exchange(5, 7), Err(6));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        // SAFETY: as in `fetch_add`.
        unsafe { T::compare_exchange_at(self.data(), current, new) }
    }
}
