//! Sending and receiving handles of a [`Queue`], and disconnect.

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;

use super::iter::{QueueIter, QueueTryIter, QueueValues};
use super::Queue;
use crate::error::Result;
use crate::raw::{GetGrant, PutGrant, QueueRole};
use crate::waitset::{Interest, Waitable};
use crate::Lease;

#[cfg(not(loom))]
use std::future::Future;

impl Queue {
    /// Opens the queue `name` as a sender: a handle that only puts.
    ///
    /// Once a queue has had a sender (a handle opened or turned into one
    /// this way), receivers ([`open_receiver`](Queue::open_receiver)) are
    /// told [`Error::Disconnected`](crate::Error::Disconnected) when every
    /// sender has dropped or its process died and nothing is left to get.
    /// A both-ways `Queue` handle counts as a sender and a receiver: while
    /// one is open, nobody is disconnected.
    ///
    /// Disconnect is a state, not a latch: "no sender now". To iterate
    /// until N producers are all done, keep a sender open (or the both-ways
    /// handle) until each producer has opened its own, then drop it; else
    /// the first producer to finish can leave the queue with no sender
    /// before a slow one has opened. A handle inherited across `fork`
    /// counts for the child only from the child's first call on it: open
    /// the sender in the child (or make one call) before the parent drops
    /// its own.
    ///
    /// # Errors
    /// As [`open`](Queue::open).
    ///
    /// ```
    /// let rx = shmkit::Queue::create_unique(4, 16)?.into_receiver()?;
    /// let tx = shmkit::Queue::open_sender(rx.name())?; // in a worker process
    /// tx.put(b"job")?;
    /// drop(tx); // the last sender goes
    /// assert_eq!(rx.get()?, b"job");
    /// assert!(matches!(rx.get(), Err(shmkit::Error::Disconnected { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_sender(name: &str) -> Result<QueueSender> {
        Queue::open(name)?.into_sender()
    }

    /// Opens the queue `name` as a receiver: a handle that only gets. Once
    /// the queue has had a receiver, senders are told
    /// [`Error::Disconnected`](crate::Error::Disconnected) when every
    /// receiver has gone (see [`open_sender`](Queue::open_sender)).
    ///
    /// # Errors
    /// As [`open`](Queue::open).
    ///
    /// ```
    /// let tx = shmkit::Queue::create_unique(4, 16)?.into_sender()?;
    /// let rx = shmkit::Queue::open_receiver(tx.name())?;
    /// tx.put(b"a")?;
    /// drop(rx); // the last receiver goes
    /// assert!(matches!(tx.put(b"b"), Err(shmkit::Error::Disconnected { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn open_receiver(name: &str) -> Result<QueueReceiver> {
        Queue::open(name)?.into_receiver()
    }

    /// This handle as a sender only (see [`open_sender`](Queue::open_sender)).
    /// It gives up receiving: if that leaves no receiver, senders are told
    /// `Disconnected`. Whether the handle removes the segment when it drops
    /// is kept.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if the
    /// queue's table of participants is full (after a `fork`).
    ///
    /// ```
    /// let tx = shmkit::Queue::create_unique(4, 16)?.into_sender()?;
    /// tx.put(b"x")?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn into_sender(mut self) -> Result<QueueSender> {
        self.0.view_mut().set_role(QueueRole::Sender)?;
        Ok(QueueSender(self))
    }

    /// This handle as a receiver only (see
    /// [`open_receiver`](Queue::open_receiver)).
    ///
    /// # Errors
    /// As [`into_sender`](Queue::into_sender).
    ///
    /// ```
    /// let rx = shmkit::Queue::create_unique(4, 16)?.into_receiver()?;
    /// assert!(matches!(rx.try_get(), Err(shmkit::Error::Empty { .. }))); // no sender yet
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn into_receiver(mut self) -> Result<QueueReceiver> {
        self.0.view_mut().set_role(QueueRole::Receiver)?;
        Ok(QueueReceiver(self))
    }
}

/// A handle on a [`Queue`] that only puts: see [`Queue::open_sender`].
/// Its methods are the queue's, and put calls say
/// [`Error::Disconnected`](crate::Error::Disconnected) once the queue has
/// had a receiver and every receiver has gone (dropped, or its process
/// died). What was put before stays in the queue.
///
/// ```
/// let q = shmkit::Queue::create_unique(4, 16)?;
/// let tx = shmkit::Queue::open_sender(q.name())?;
/// tx.put(b"hello")?;
/// assert_eq!(q.get()?, b"hello");
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct QueueSender(Queue);

/// A handle on a [`Queue`] that only gets: see [`Queue::open_receiver`].
/// Its methods are the queue's, and get calls say
/// [`Error::Disconnected`](crate::Error::Disconnected) once the queue has
/// had a sender, every sender has gone, and nothing is left to get (no
/// message, and no lease held that could come back). Iterating it ends
/// there.
///
/// ```
/// let rx = shmkit::Queue::create_unique(4, 16)?.into_receiver()?;
/// let tx = shmkit::Queue::open_sender(rx.name())?;
/// for i in 0..3u8 {
///     tx.put(&[i])?;
/// }
/// drop(tx);
/// let got: Vec<Vec<u8>> = rx.iter().collect();
/// assert_eq!(got, [[0], [1], [2]]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct QueueReceiver(Queue);

impl fmt::Debug for QueueSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueSender")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for QueueReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueReceiver")
            .field("name", &self.name())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// The calls both roles share.
macro_rules! common {
    ($ty:ident, $make:literal) => {
        impl $ty {
            /// The queue's name (see [`Queue::name`]).
            ///
            /// ```
            #[doc = $make]
            /// assert!(h.name().starts_with("shmkit-"));
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn name(&self) -> &str {
                self.0.name()
            }

            /// Leaves the segment in place when this handle drops (see
            /// [`Queue::keep`]).
            ///
            /// ```
            #[doc = $make]
            /// h.keep(); // an opened handle never removes it anyway
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn keep(&self) {
                self.0.keep()
            }

            /// Messages in the queue now (see [`Queue::len`]).
            ///
            /// ```
            #[doc = $make]
            /// assert_eq!(h.len(), 0);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether the queue holds no message now.
            ///
            /// ```
            #[doc = $make]
            /// assert!(h.is_empty());
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }

            /// How many messages fit.
            ///
            /// ```
            #[doc = $make]
            /// assert_eq!(h.capacity(), 4);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn capacity(&self) -> usize {
                self.0.capacity()
            }

            /// The largest message, in bytes.
            ///
            /// ```
            #[doc = $make]
            /// assert_eq!(h.max_message(), 16);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn max_message(&self) -> usize {
                self.0.max_message()
            }

            /// Closes the queue for everyone (see [`Queue::close`]).
            ///
            /// ```
            #[doc = $make]
            /// h.close();
            /// assert!(h.is_closed());
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn close(&self) {
                self.0.close()
            }

            /// Whether the queue was closed.
            ///
            /// ```
            #[doc = $make]
            /// assert!(!h.is_closed());
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn is_closed(&self) -> bool {
                self.0.is_closed()
            }

            /// Whether the other side has gone: for a sender, every
            /// receiver; for a receiver, every sender (messages may still be
            /// left to get). False until the queue has had a handle of the
            /// other side, and while a both-ways [`Queue`] handle is open.
            /// Reads the liveness of the other side's processes.
            ///
            /// ```
            #[doc = $make]
            /// assert!(!h.is_disconnected()); // `q`, both ways, is open
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn is_disconnected(&self) -> bool {
                self.0.raw().is_disconnected()
            }

            /// Sets how long this handle's blocking calls spin before they
            /// sleep (see [`Queue::set_spin`]).
            ///
            /// ```
            #[doc = $make]
            /// h.set_spin(shmkit::Spin::Never);
            /// assert_eq!(h.spin(), shmkit::Spin::Never);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn set_spin(&self, spin: crate::Spin) {
                self.0.set_spin(spin)
            }

            /// This handle's spin setting.
            ///
            /// ```
            #[doc = $make]
            /// assert_eq!(h.spin(), shmkit::Spin::Adaptive);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn spin(&self) -> crate::Spin {
                self.0.spin()
            }
        }
    };
}

common!(
    QueueSender,
    "# let q = shmkit::Queue::create_unique(4, 16)?;\nlet h = shmkit::Queue::open_sender(q.name())?;"
);
common!(
    QueueReceiver,
    "# let q = shmkit::Queue::create_unique(4, 16)?;\nlet h = shmkit::Queue::open_receiver(q.name())?;"
);

impl QueueSender {
    /// Puts a copy of `msg`, waiting for room as long as it takes (see
    /// [`Queue::put`]).
    ///
    /// # Errors
    /// As [`Queue::put`], and [`Error::Disconnected`](crate::Error::Disconnected)
    /// once every receiver has gone.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put(b"abc")?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put(&self, msg: &[u8]) -> Result<()> {
        self.0.put(msg)
    }

    /// Puts if there is room now, else [`Error::Full`](crate::Error::Full)
    /// (see [`Queue::try_put`]).
    ///
    /// # Errors
    /// As [`put`](QueueSender::put), and `Full`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.try_put(b"a")?;
    /// assert!(matches!(tx.try_put(b"b"), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put(&self, msg: &[u8]) -> Result<()> {
        self.0.try_put(msg)
    }

    /// Puts, waiting for room at most `timeout` (see [`Queue::put_timeout`]).
    ///
    /// # Errors
    /// As [`put`](QueueSender::put), and [`Error::Timeout`](crate::Error::Timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put(b"a")?;
    /// let r = tx.put_timeout(b"b", std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.0.put_timeout(msg, timeout)
    }

    /// Puts, waiting for room until `deadline` (see
    /// [`Queue::put_deadline`]).
    ///
    /// # Errors
    /// As [`put_timeout`](QueueSender::put_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_deadline(b"a", std::time::Instant::now())?; // room now: no wait
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_deadline(&self, msg: &[u8], deadline: std::time::Instant) -> Result<()> {
        self.0.put_deadline(msg, deadline)
    }

    /// Puts the bytes of a `Pod` value (see [`Queue::put_value`]).
    ///
    /// # Errors
    /// As [`put`](QueueSender::put).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_value(&7u64)?;
    /// assert_eq!(q.get_value::<u64>()?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_value<T: Pod>(&self, value: &T) -> Result<()> {
        self.0.put_value(value)
    }

    /// [`put_value`](QueueSender::put_value) if there is room now, else
    /// `Full` (see [`Queue::try_put_value`]).
    ///
    /// # Errors
    /// As [`try_put`](QueueSender::try_put).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.try_put_value(&1u32)?;
    /// assert!(matches!(tx.try_put_value(&2u32), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put_value<T: Pod>(&self, value: &T) -> Result<()> {
        self.0.try_put_value(value)
    }

    /// [`put_value`](QueueSender::put_value) waiting for room at most
    /// `timeout` (see [`Queue::put_value_timeout`]).
    ///
    /// # Errors
    /// As [`put_timeout`](QueueSender::put_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_value(&1u32)?;
    /// let r = tx.put_value_timeout(&2u32, std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_value_timeout<T: Pod>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.0.put_value_timeout(value, timeout)
    }

    /// [`put_value`](QueueSender::put_value) waiting for room until
    /// `deadline` (see [`Queue::put_value_deadline`]).
    ///
    /// # Errors
    /// As [`put_deadline`](QueueSender::put_deadline).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_value_deadline(&1u32, std::time::Instant::now())?; // room now
    /// assert_eq!(q.get_value::<u32>()?, 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_value_deadline<T: Pod>(
        &self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.0.put_value_deadline(value, deadline)
    }

    /// Reserves room for a message of `len` bytes, written in place (see
    /// [`Queue::reserve`]).
    ///
    /// # Errors
    /// As [`put`](QueueSender::put).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// let mut g = tx.reserve(3)?;
    /// g.copy_from_slice(b"abc");
    /// g.commit();
    /// assert_eq!(q.get()?, b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve(&self, len: usize) -> Result<PutGrant<'_>> {
        self.0.reserve(len)
    }

    /// [`reserve`](QueueSender::reserve) if there is room now.
    ///
    /// # Errors
    /// As [`try_put`](QueueSender::try_put).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.try_reserve(1)?.commit();
    /// assert!(matches!(tx.try_reserve(1), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_reserve(&self, len: usize) -> Result<PutGrant<'_>> {
        self.0.try_reserve(len)
    }

    /// [`reserve`](QueueSender::reserve), waiting for room at most
    /// `timeout` (see [`Queue::reserve_timeout`]).
    ///
    /// # Errors
    /// As [`put_timeout`](QueueSender::put_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put(b"a")?;
    /// let r = tx.reserve_timeout(1, std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_timeout(&self, len: usize, timeout: Duration) -> Result<PutGrant<'_>> {
        self.0.reserve_timeout(len, timeout)
    }

    /// [`reserve`](QueueSender::reserve), waiting for room until
    /// `deadline` (see [`Queue::reserve_deadline`]).
    ///
    /// # Errors
    /// As [`put_timeout`](QueueSender::put_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 16)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.reserve_deadline(1, std::time::Instant::now())?.commit()?; // room now: no wait
    /// assert_eq!(q.get()?.len(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn reserve_deadline(
        &self,
        len: usize,
        deadline: std::time::Instant,
    ) -> Result<PutGrant<'_>> {
        self.0.reserve_deadline(len, deadline)
    }

    /// [`put`](QueueSender::put) as a future (see [`Queue::put_async`]).
    ///
    /// # Errors
    /// As [`put`](QueueSender::put).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut put = std::pin::pin!(tx.put_async(b"job"));
    /// assert!(put.as_mut().poll(&mut cx).is_ready());
    /// # use std::future::Future;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn put_async<'a>(&'a self, msg: &'a [u8]) -> impl Future<Output = Result<()>> + 'a {
        self.0.put_async(msg)
    }

    /// "Room to put" (see [`Queue::writable`]); also ready once every
    /// receiver may have gone.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// assert!(tx.writable().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn writable(&self) -> Interest<'_> {
        self.0.writable()
    }
}

#[cfg(feature = "serde")]
impl QueueSender {
    /// Puts any serialisable value (see [`Queue::put_serde`]).
    ///
    /// # Errors
    /// As [`Queue::put_serde`], and `Disconnected`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 64)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_serde(&("job", 1u8))?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_serde<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.0.put_serde(value)
    }

    /// [`put_serde`](QueueSender::put_serde) if there is room now, else
    /// `Full` (see [`Queue::try_put_serde`]).
    ///
    /// # Errors
    /// As [`put_serde`](QueueSender::put_serde), and `Full`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 64)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.try_put_serde("a")?;
    /// assert!(matches!(tx.try_put_serde("b"), Err(shmkit::Error::Full { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_put_serde<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.0.try_put_serde(value)
    }

    /// [`put_serde`](QueueSender::put_serde) waiting for room at most
    /// `timeout` (see [`Queue::put_serde_timeout`]).
    ///
    /// # Errors
    /// As [`put_serde`](QueueSender::put_serde), and `Timeout`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 64)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_serde("a")?;
    /// let r = tx.put_serde_timeout("b", std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_serde_timeout<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        timeout: Duration,
    ) -> Result<()> {
        self.0.put_serde_timeout(value, timeout)
    }

    /// [`put_serde`](QueueSender::put_serde) waiting for room until
    /// `deadline` (see [`Queue::put_serde_deadline`]).
    ///
    /// # Errors
    /// As [`put_serde`](QueueSender::put_serde), and `Timeout`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(1, 64)?;
    /// let tx = shmkit::Queue::open_sender(q.name())?;
    /// tx.put_serde_deadline("a", std::time::Instant::now())?; // room now
    /// assert_eq!(q.get_serde::<String>()?, "a");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn put_serde_deadline<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: std::time::Instant,
    ) -> Result<()> {
        self.0.put_serde_deadline(value, deadline)
    }
}

/// Waiting on a sender waits for room: [`QueueSender::writable`].
impl Waitable for QueueSender {
    fn interest(&self) -> Interest<'_> {
        self.writable()
    }
}

impl QueueReceiver {
    /// Takes the next message, waiting as long as it takes (see
    /// [`Queue::get`]).
    ///
    /// # Errors
    /// As [`Queue::get`], and [`Error::Disconnected`](crate::Error::Disconnected)
    /// once every sender has gone and nothing is left.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put(b"x")?;
    /// assert_eq!(rx.get()?, b"x");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get(&self) -> Result<Vec<u8>> {
        self.0.get()
    }

    /// Takes the next message if there is one now, else
    /// [`Error::Empty`](crate::Error::Empty).
    ///
    /// # Errors
    /// As [`get`](QueueReceiver::get), and `Empty`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(matches!(rx.try_get(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get(&self) -> Result<Vec<u8>> {
        self.0.try_get()
    }

    /// Takes the next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get`](QueueReceiver::get), and [`Error::Timeout`](crate::Error::Timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.0.get_timeout(timeout)
    }

    /// Takes the next message, waiting until `deadline` (see
    /// [`Queue::get_deadline`]).
    ///
    /// # Errors
    /// As [`get_timeout`](QueueReceiver::get_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_deadline(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_deadline(&self, deadline: std::time::Instant) -> Result<Vec<u8>> {
        self.0.get_deadline(deadline)
    }

    /// Takes the next message into `buf` (see [`Queue::get_into`]).
    ///
    /// # Errors
    /// As [`Queue::get_into`], and `Disconnected`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put(b"abc")?;
    /// let mut buf = [0; 16];
    /// let n = rx.get_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.0.get_into(buf)
    }

    /// [`get_into`](QueueReceiver::get_into) if there is a message now.
    ///
    /// # Errors
    /// As [`get_into`](QueueReceiver::get_into), and `Empty`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(matches!(rx.try_get_into(&mut [0; 16]), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.0.try_get_into(buf)
    }

    /// [`get_into`](QueueReceiver::get_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_into`](QueueReceiver::get_into), and `Timeout`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_into_timeout(&mut [0; 16], std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.0.get_into_timeout(buf, timeout)
    }

    /// [`get_into`](QueueReceiver::get_into) waiting until `deadline` (see
    /// [`Queue::get_into_deadline`]).
    ///
    /// # Errors
    /// As [`get_into_timeout`](QueueReceiver::get_into_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_into_deadline(&mut [0; 16], std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_into_deadline(&self, buf: &mut [u8], deadline: std::time::Instant) -> Result<usize> {
        self.0.get_into_deadline(buf, deadline)
    }

    /// Takes the next message in place (see [`Queue::get_ref`]).
    ///
    /// # Errors
    /// As [`get`](QueueReceiver::get).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put(b"abc")?;
    /// assert_eq!(&*rx.get_ref()?, b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_ref(&self) -> Result<GetGrant<'_>> {
        self.0.get_ref()
    }

    /// [`get_ref`](QueueReceiver::get_ref) if there is a message now.
    ///
    /// # Errors
    /// As [`try_get`](QueueReceiver::try_get).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(matches!(rx.try_get_ref(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_ref(&self) -> Result<GetGrant<'_>> {
        self.0.try_get_ref()
    }

    /// [`get_ref`](QueueReceiver::get_ref), waiting at most `timeout`
    /// (see [`Queue::get_ref_timeout`]).
    ///
    /// # Errors
    /// As [`get_timeout`](QueueReceiver::get_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_ref_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_ref_timeout(&self, timeout: Duration) -> Result<GetGrant<'_>> {
        self.0.get_ref_timeout(timeout)
    }

    /// [`get_ref`](QueueReceiver::get_ref), waiting until `deadline` (see
    /// [`Queue::get_ref_deadline`]).
    ///
    /// # Errors
    /// As [`get_timeout`](QueueReceiver::get_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put(b"abc")?;
    /// assert_eq!(&*rx.get_ref_deadline(std::time::Instant::now())?, b"abc");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_ref_deadline(&self, deadline: std::time::Instant) -> Result<GetGrant<'_>> {
        self.0.get_ref_deadline(deadline)
    }

    /// Takes a message holding exactly a `T` (see [`Queue::get_value`]).
    ///
    /// # Errors
    /// As [`Queue::get_value`], and `Disconnected`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put_value(&9u32)?;
    /// assert_eq!(rx.get_value::<u32>()?, 9);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_value<T: Pod>(&self) -> Result<T> {
        self.0.get_value()
    }

    /// [`get_value`](QueueReceiver::get_value) if a message is there now,
    /// else `Empty` (see [`Queue::try_get_value`]).
    ///
    /// # Errors
    /// As [`try_get`](QueueReceiver::try_get), and
    /// [`Error::WrongSize`](crate::Error::WrongSize).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(matches!(rx.try_get_value::<u32>(), Err(shmkit::Error::Empty { .. })));
    /// q.put_value(&9u32)?;
    /// assert_eq!(rx.try_get_value::<u32>()?, 9);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_value<T: Pod>(&self) -> Result<T> {
        self.0.try_get_value()
    }

    /// [`get_value`](QueueReceiver::get_value) waiting at most `timeout`
    /// (see [`Queue::get_value_timeout`]).
    ///
    /// # Errors
    /// As [`get_timeout`](QueueReceiver::get_timeout), and
    /// [`Error::WrongSize`](crate::Error::WrongSize).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_value_timeout::<u32>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_value_timeout<T: Pod>(&self, timeout: Duration) -> Result<T> {
        self.0.get_value_timeout(timeout)
    }

    /// [`get_value`](QueueReceiver::get_value) waiting until `deadline`
    /// (see [`Queue::get_value_deadline`]).
    ///
    /// # Errors
    /// As [`get_deadline`](QueueReceiver::get_deadline), and
    /// [`Error::WrongSize`](crate::Error::WrongSize).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put_value(&3u16)?;
    /// assert_eq!(rx.get_value_deadline::<u16>(std::time::Instant::now())?, 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_value_deadline<T: Pod>(&self, deadline: std::time::Instant) -> Result<T> {
        self.0.get_value_deadline(deadline)
    }

    /// Takes the next message under a lease (see [`Queue::get_lease`]).
    ///
    /// # Errors
    /// As [`Queue::get_lease`], and `Disconnected`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put(b"job")?;
    /// let lease = rx.get_lease()?;
    /// assert_eq!(&*lease, b"job");
    /// lease.ack()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease(&self) -> Result<Lease<'_>> {
        self.0.get_lease()
    }

    /// [`get_lease`](QueueReceiver::get_lease) if there is a message now.
    ///
    /// # Errors
    /// As [`try_get`](QueueReceiver::try_get).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(matches!(rx.try_get_lease(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_lease(&self) -> Result<Lease<'_>> {
        self.0.try_get_lease()
    }

    /// [`get_lease`](QueueReceiver::get_lease), waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`get_timeout`](QueueReceiver::get_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_lease_timeout(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease_timeout(&self, timeout: Duration) -> Result<Lease<'_>> {
        self.0.get_lease_timeout(timeout)
    }

    /// [`get_lease`](QueueReceiver::get_lease), waiting until `deadline`
    /// (see [`Queue::get_lease_deadline`]).
    ///
    /// # Errors
    /// As [`get_timeout`](QueueReceiver::get_timeout).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_lease_deadline(std::time::Instant::now());
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease_deadline(&self, deadline: std::time::Instant) -> Result<Lease<'_>> {
        self.0.get_lease_deadline(deadline)
    }

    /// [`get`](QueueReceiver::get) as a future (see [`Queue::get_async`]).
    ///
    /// # Errors
    /// As [`get`](QueueReceiver::get).
    ///
    /// ```
    /// # use std::future::Future;
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// q.put(b"job")?;
    /// let mut get = std::pin::pin!(rx.get_async());
    /// let std::task::Poll::Ready(m) = get.as_mut().poll(&mut cx) else { panic!() };
    /// assert_eq!(m?, b"job");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn get_async(&self) -> impl Future<Output = Result<Vec<u8>>> + '_ {
        self.0.get_async()
    }

    /// The messages, each taken by a blocking [`get`](QueueReceiver::get),
    /// until every sender has gone and nothing is left, or the queue is
    /// closed and drained (see [`QueueIter`]).
    ///
    /// ```
    /// let rx = shmkit::Queue::create_unique(4, 16)?.into_receiver()?;
    /// let tx = shmkit::Queue::open_sender(rx.name())?;
    /// tx.put(b"a")?;
    /// drop(tx);
    /// assert_eq!(rx.iter().count(), 1);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn iter(&self) -> QueueIter<'_> {
        self.0.iter()
    }

    /// The messages there now, without waiting (see [`QueueTryIter`]).
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 16)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put(b"a")?;
    /// q.put(b"b")?;
    /// assert_eq!(rx.try_iter().count(), 2);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_iter(&self) -> QueueTryIter<'_> {
        self.0.try_iter()
    }

    /// The messages as `Pod` values, each taken by a blocking
    /// [`get_value`](QueueReceiver::get_value) (see [`QueueValues`]).
    ///
    /// ```
    /// let rx = shmkit::Queue::create_unique(4, 16)?.into_receiver()?;
    /// let tx = shmkit::Queue::open_sender(rx.name())?;
    /// tx.put_value(&1u64)?;
    /// tx.put_value(&2u64)?;
    /// drop(tx);
    /// assert_eq!(rx.values::<u64>().sum::<u64>(), 3);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn values<T: Pod>(&self) -> QueueValues<'_, T> {
        self.0.values()
    }

    /// "A message to get" (see [`Queue::readable`]); also ready once every
    /// sender may have gone.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(2, 8)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(!rx.readable().is_ready());
    /// q.put(b"x")?;
    /// assert!(rx.readable().is_ready());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn readable(&self) -> Interest<'_> {
        self.0.readable()
    }
}

#[cfg(feature = "serde")]
impl QueueReceiver {
    /// Takes the next message and decodes it (see [`Queue::get_serde`]).
    ///
    /// # Errors
    /// As [`Queue::get_serde`], and `Disconnected`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 64)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put_serde(&5u16)?;
    /// assert_eq!(rx.get_serde::<u16>()?, 5);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.0.get_serde()
    }

    /// [`get_serde`](QueueReceiver::get_serde) if a message is there now,
    /// else `Empty` (see [`Queue::try_get_serde`]).
    ///
    /// # Errors
    /// As [`get_serde`](QueueReceiver::get_serde), and `Empty`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 64)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// assert!(matches!(rx.try_get_serde::<u8>(), Err(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_serde<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.0.try_get_serde()
    }

    /// [`get_serde`](QueueReceiver::get_serde) waiting at most `timeout`
    /// (see [`Queue::get_serde_timeout`]).
    ///
    /// # Errors
    /// As [`get_serde`](QueueReceiver::get_serde), and `Timeout`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 64)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// let r = rx.get_serde_timeout::<u8>(std::time::Duration::from_millis(1));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_serde_timeout<T: serde::de::DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T> {
        self.0.get_serde_timeout(timeout)
    }

    /// [`get_serde`](QueueReceiver::get_serde) waiting until `deadline`
    /// (see [`Queue::get_serde_deadline`]).
    ///
    /// # Errors
    /// As [`get_serde`](QueueReceiver::get_serde), and `Timeout`.
    ///
    /// ```
    /// # let q = shmkit::Queue::create_unique(4, 64)?;
    /// let rx = shmkit::Queue::open_receiver(q.name())?;
    /// q.put_serde(&7u8)?;
    /// assert_eq!(rx.get_serde_deadline::<u8>(std::time::Instant::now())?, 7);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_serde_deadline<T: serde::de::DeserializeOwned>(
        &self,
        deadline: std::time::Instant,
    ) -> Result<T> {
        self.0.get_serde_deadline(deadline)
    }
}

/// Waiting on a receiver waits for a message: [`QueueReceiver::readable`].
impl Waitable for QueueReceiver {
    fn interest(&self) -> Interest<'_> {
        self.readable()
    }
}

impl<'a> IntoIterator for &'a QueueReceiver {
    type Item = Vec<u8>;
    type IntoIter = QueueIter<'a>;

    fn into_iter(self) -> QueueIter<'a> {
        self.iter()
    }
}
