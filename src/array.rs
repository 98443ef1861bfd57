//! `Array<T>`: a fixed-length shared array of plain data, with a lock.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;

use crate::error::{Error, OrNamed, Result};
use crate::handle::{named_handle, Core, Named};
use crate::raw::header::Kind;
use crate::raw::{RawLock, RawLockGuard, Spin};
use crate::segment::{Options, Segment, Spec};
use crate::value::{check_align, data_offset, lock_or_panic};

/// A fixed-length array of `T: Pod` shared by processes, with a lock (Python's
/// `multiprocessing.Array`).
///
/// Every access goes through the lock: [`get`](Array::get),
/// [`set`](Array::set) and [`to_vec`](Array::to_vec) take it for one call,
/// [`lock`](Array::lock) holds it for as long as the guard lives and gives
/// `&mut [T]`. The length is recorded in the header and checked against the
/// segment's real length when the array is opened.
///
/// ```
/// use shmkit::Array;
///
/// let a = Array::from_slice_unique(&[5i32, 6, 7])?;
/// let b = Array::<i32>::open(a.name())?; // as another process would
/// b.set(0, 50)?;
/// b.lock()?[2] += 1;
/// assert_eq!(a.to_vec(), [50, 6, 8]);
/// assert_eq!(a.get(3), None);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Array<T: Pod>(Named<ArrayCore<T>>);

/// An array's payload: a [`RawLock`], then `len` `T`s at
/// `data_offset::<T>()`; `len` is the header's `aux`.
pub(crate) struct ArrayCore<T>(PhantomData<T>);

impl<T: Pod> Core for ArrayCore<T> {
    /// The lock, and the length read once from the header.
    type View = (&'static RawLock, usize);

    fn spec() -> Spec {
        Spec::typed::<T>(Kind::Array, 0)
    }

    fn precheck(name: &str) -> Result<()> {
        check_align::<T>(name)
    }

    unsafe fn attach(p: *mut u8, len: usize, aux: u64, _created: bool) -> Result<Self::View> {
        let n = usize::try_from(aux)
            .ok()
            .filter(|&n| payload_len::<T>(n) == Some(len))
            .ok_or_else(|| {
                Error::corrupted(
                    "",
                    format!(
                        "the header records {aux} elements, which do not fill its {len} payload bytes"
                    ),
                )
            })?;
        // SAFETY: the caller's contract is `RawLock::attach`'s: the payload
        // starts with the lock, initialised before the header was published.
        let lock =
            unsafe { RawLock::attach(p, len) }.map_err(|e| Error::corrupted("", e.to_string()))?;
        Ok((lock, n))
    }
}

named_handle! {
    impl[T: Pod] Array<T> {
        what: "array",
        path: "shmkit::Array::<i64>",
        make: "shmkit::Array::create_unique(4, 0i64)?",
        open_errors: "[`Error::TypeMismatch`](crate::Error::TypeMismatch) if it holds another element type, [`Error::Corrupted`](crate::Error::Corrupted) if the recorded length does not fit the payload, [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a `T` aligned to more than 64 bytes",
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish()
    }
}

/// `data_offset + len * size_of::<T>()`, or `None` on overflow.
fn payload_len<T>(len: usize) -> Option<usize> {
    len.checked_mul(std::mem::size_of::<T>())?
        .checked_add(data_offset::<T>())
}

impl<T: Pod> Array<T> {
    fn create_inner(
        name: Option<&str>,
        len: usize,
        opts: &Options,
        fill: impl Fn(&mut [T]),
    ) -> Result<Array<T>> {
        let payload = payload_len::<T>(len).ok_or_else(|| {
            Error::InvalidArgument(format!("an Array of {len} elements is too large"))
        })?;
        let init = |p: *mut u8, plen: usize| {
            // SAFETY: `p` is the fresh, unpublished payload of `plen` bytes,
            // 64-aligned; nobody else can use it until the header is
            // published, and it holds the lock and `len` elements.
            unsafe {
                RawLock::init_in(p, plen)?;
                let data = p.add(data_offset::<T>()).cast::<T>();
                fill(std::slice::from_raw_parts_mut(data, len));
            }
            Ok(())
        };
        Named::create(name, len as u64, payload, opts, init).map(Array)
    }

    fn from_named(n: Named<ArrayCore<T>>) -> Array<T> {
        Array(n)
    }

    fn named(&self) -> &Named<ArrayCore<T>> {
        &self.0
    }

    /// Names this array and operation `op` in an error (for `or_named`).
    #[inline]
    pub(crate) fn at(&self, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        self.named().at("Array", op)
    }

    #[inline]
    fn seg(&self) -> &Segment {
        self.0.seg()
    }

    /// Creates an array named `name` of `len` copies of `fill`. A length
    /// of 0 is allowed, as for a `Vec`: the array holds nothing (`get`
    /// says `None`, `to_vec` is empty), and its lock still works.
    ///
    /// # Errors
    /// As [`Segment::create`]; [`Error::InvalidArgument`] if the array
    /// would be too large.
    ///
    /// ```
    /// # let name = format!("shmkit-doc-array-{}", std::process::id());
    /// let a = shmkit::Array::create(&name, 3, 0u8)?;
    /// assert_eq!(a.to_vec(), [0, 0, 0]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create(name: &str, len: usize, fill: T) -> Result<Array<T>> {
        Array::create_with(name, len, fill, &Options::new())
    }

    /// [`create`](Array::create) with [`Options`].
    ///
    /// ```
    /// # let name = format!("shmkit-doc-arrayw-{}", std::process::id());
    /// let a = shmkit::Array::create_with(&name, 3, 1u16, &shmkit::Options::new())?;
    /// # let _ = a;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_with(name: &str, len: usize, fill: T, opts: &Options) -> Result<Array<T>> {
        Array::create_inner(Some(name), len, opts, |s| s.fill(fill))
    }

    /// Creates an array under a fresh unique name.
    ///
    /// ```
    /// let a = shmkit::Array::create_unique(2, 9u32)?;
    /// assert_eq!(a.to_vec(), [9, 9]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn create_unique(len: usize, fill: T) -> Result<Array<T>> {
        Array::create_inner(None, len, &Options::new(), |s| s.fill(fill))
    }

    /// Creates an array named `name` holding a copy of `values`.
    ///
    /// ```
    /// # let name = format!("shmkit-doc-arrayfs-{}", std::process::id());
    /// let a = shmkit::Array::from_slice(&name, &[1.5f64, 2.5])?;
    /// assert_eq!(a.get(1), Some(2.5));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn from_slice(name: &str, values: &[T]) -> Result<Array<T>> {
        Array::create_inner(Some(name), values.len(), &Options::new(), |s| {
            s.copy_from_slice(values)
        })
    }

    /// Creates an array under a fresh unique name holding a copy of `values`.
    ///
    /// ```
    /// let a = shmkit::Array::from_slice_unique(&[1u8, 2])?;
    /// assert_eq!(a.len(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn from_slice_unique(values: &[T]) -> Result<Array<T>> {
        Array::create_inner(None, values.len(), &Options::new(), |s| {
            s.copy_from_slice(values)
        })
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(shmkit::Array::create_unique(3, 0u8)?.len(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.0.view().1
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// assert!(shmkit::Array::<u8>::from_slice_unique(&[])?.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn raw_lock(&self) -> &'static RawLock {
        self.0.view().0
    }

    fn data(&self) -> *mut T {
        // SAFETY: the payload is data_offset + len * size_of::<T>() bytes
        // (checked by `ArrayCore::attach`), so the offset stays inside it; it is a
        // multiple of T's alignment.
        unsafe { self.seg().as_ptr().add(data_offset::<T>()).cast::<T>() }
    }

    fn lock_raw(&self) -> RawLockGuard<'_> {
        lock_or_panic(self.raw_lock(), self.seg(), "Array")
    }

    fn guard<'a>(&'a self, inner: RawLockGuard<'a>) -> ArrayGuard<'a, T> {
        ArrayGuard {
            data: self.data(),
            len: self.len(),
            inner,
        }
    }

    /// Element `index`, or `None` past the end. Takes the lock, waiting for
    /// as long as it is held (a dead holder's lock is taken over within
    /// about 20 ms); for a bounded wait index the guard of
    /// [`lock_timeout`](Array::lock_timeout).
    ///
    /// # Panics
    /// If the calling thread holds this array's lock (an [`ArrayGuard`] of
    /// this thread, through any handle on the array): index the guard.
    /// Bytes a peer writes into the lock never make it panic; a forged live
    /// owner makes it wait.
    ///
    /// ```
    /// let a = shmkit::Array::from_slice_unique(&[1u8, 2])?;
    /// assert_eq!(a.get(1), Some(2));
    /// assert_eq!(a.get(2), None);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        if index >= self.len() {
            return None;
        }
        let _g = self.lock_raw();
        // SAFETY: index < len, so the element is inside the payload; we hold
        // the lock that every writer holds.
        Some(unsafe { self.data().add(index).read() })
    }

    /// Sets element `index`. Takes the lock, waiting for as long as it is
    /// held; for a bounded wait write through the guard of
    /// [`lock_timeout`](Array::lock_timeout).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `index >= len()`;
    /// [`Error::Deadlock`] if this thread holds the lock.
    ///
    /// ```
    /// let a = shmkit::Array::create_unique(2, 0u8)?;
    /// a.set(1, 7)?;
    /// assert!(a.set(2, 7).is_err());
    /// assert_eq!(a.to_vec(), [0, 7]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        if index >= self.len() {
            return Err(Error::InvalidArgument(format!(
                "index {index} out of range for Array {:?} of length {}",
                self.name(),
                self.len()
            )));
        }
        let _g = self
            .raw_lock()
            .lock_one_shot(self.seg().object_id())
            .or_named(self.at("set"))?;
        // SAFETY: index < len; we hold the lock.
        unsafe { self.data().add(index).write(value) };
        Ok(())
    }

    /// A copy of every element, taken under the lock, waiting for as long
    /// as it is held; for a bounded wait copy the guard of
    /// [`lock_timeout`](Array::lock_timeout).
    ///
    /// Always exactly [`len`](Array::len) elements, copied from the array's
    /// own bytes: the length is this handle's, checked against the object
    /// at open, and nothing read from shared memory changes it. A peer that
    /// ignores the lock (or forges it) and writes meanwhile can make the
    /// copy a mix of old and new values, never a read outside the array.
    ///
    /// # Panics
    /// If the calling thread holds this array's lock (an [`ArrayGuard`] of
    /// this thread, through any handle on the array): copy the guard. Bytes
    /// a peer writes into the lock never make it panic.
    ///
    /// ```
    /// let a = shmkit::Array::from_slice_unique(&[3u32, 4])?;
    /// assert_eq!(a.to_vec(), vec![3, 4]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.lock_raw();
        // SAFETY: `len` elements start at data(); we hold the lock.
        unsafe { std::slice::from_raw_parts(self.data(), self.len()) }.to_vec()
    }

    /// Takes the lock and gives the elements as a slice until the guard
    /// drops. Waits for as long as the lock is held (a dead holder's lock is
    /// taken over within about 20 ms); see
    /// [`lock_timeout`](Array::lock_timeout) and
    /// [`try_lock`](Array::try_lock) for bounded waits.
    ///
    /// # Errors
    /// [`Error::Deadlock`] if this thread already holds it (through this or
    /// another handle on the array).
    ///
    /// ```
    /// let a = shmkit::Array::create_unique(3, 1i32)?;
    /// {
    ///     let mut g = a.lock()?;
    ///     for (i, x) in g.iter_mut().enumerate() {
    ///         *x += i as i32;
    ///     }
    /// }
    /// assert_eq!(a.to_vec(), [1, 2, 3]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>> {
        let inner = self
            .raw_lock()
            .lock_in(self.seg().object_id(), None, Spin::Adaptive)
            .or_named(self.at("lock"))?;
        Ok(self.guard(inner))
    }

    /// As [`lock`](Array::lock), but fails with [`Error::Timeout`] once
    /// `timeout` has passed (never earlier): the timed form of
    /// [`get`](Array::get), [`set`](Array::set) and
    /// [`to_vec`](Array::to_vec), for when a holder that lives but never
    /// lets go (or a peer that forges one) must not block the caller
    /// forever. A dead holder's lock is taken over even with a zero timeout.
    ///
    /// # Errors
    /// [`Error::Timeout`]; [`Error::Deadlock`] if this thread holds the lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = shmkit::Array::from_slice_unique(&[1u32, 2, 3])?;
    /// let t = Duration::from_millis(100);
    /// a.lock_timeout(t)?[0] = 10; // a timed set
    /// assert_eq!(a.lock_timeout(t)?.get(0).copied(), Some(10)); // a timed get
    /// assert_eq!(a.lock_timeout(t)?.to_vec(), [10, 2, 3]); // a timed to_vec
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: std::time::Duration) -> Result<ArrayGuard<'_, T>> {
        let inner = self
            .raw_lock()
            .lock_in(self.seg().object_id(), Some(timeout), Spin::Adaptive)
            .or_named(self.at("lock_timeout"))?;
        Ok(self.guard(inner))
    }

    /// As [`lock`](Array::lock) if that needs no waiting (the lock is free,
    /// or its holder is dead); `None` if it is held, also by this thread.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for a corrupted lock.
    ///
    /// ```
    /// let a = shmkit::Array::create_unique(2, 0u8)?;
    /// let g = a.try_lock()?.expect("free");
    /// assert!(a.try_lock()?.is_none());
    /// assert_eq!(g.len(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_lock(&self) -> Result<Option<ArrayGuard<'_, T>>> {
        let inner = self
            .raw_lock()
            .try_lock_in(self.seg().object_id())
            .or_named(self.at("try_lock"))?;
        Ok(inner.map(|g| self.guard(g)))
    }
}

/// The elements of an [`Array`], locked until dropped.
///
/// The slice is the array's shared bytes in place, exactly
/// [`Array::len`] elements (a length this handle checked against the object
/// at open; nothing read from shared memory changes it), so no access
/// through the guard can leave the array. The lock keeps out every peer
/// that follows the protocol. A hostile peer (one that writes the bytes
/// without the lock, or forges the lock word) can change elements under the
/// guard: the holder may then see values change between two reads, and its
/// writes may be overwritten. It never sees memory outside the array, and
/// `T: Pod` makes every bit pattern a valid `T`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    data: *mut T,
    len: usize,
    inner: RawLockGuard<'a>,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// True when this acquisition took the lock over from a holder that died
    /// (possibly half way through an update).
    ///
    /// ```
    /// let a = shmkit::Array::create_unique(1, 0u8)?;
    /// assert!(!a.lock()?.owner_died());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn owner_died(&self) -> bool {
        self.inner.owner_died()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements at `data` lie in the segment `inner`
        // borrows; we hold the lock, so no other thread or well-behaved
        // process accesses them until the guard drops.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
