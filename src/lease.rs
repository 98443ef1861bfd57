//! Leases and `join` on [`Queue`]: work that survives the worker that took
//! it (Python's `JoinableQueue`, with redelivery). The core is in
//! `raw/queue/lease.rs`.

use std::time::Duration;

use crate::error::{OrNamed, Result};
use crate::raw::Lease;
use crate::sync::Deadline;
use crate::Queue;
#[cfg(not(loom))]
use std::future::Future;

impl Queue {
    /// Takes the next message under a [`Lease`], waiting as long as it
    /// takes. The message stays in the queue's memory until the lease is
    /// [acked](Lease::ack); a lease that ends any other way (dropped, which
    /// is the "nack", or held by a process that dies) gives the message
    /// back, and it is delivered again, marked
    /// [`redelivered`](Lease::redelivered).
    ///
    /// Guarantee: every message whose put returned `Ok` and that is taken
    /// under leases is acked exactly once, provided some consumer keeps
    /// taking leases. It may be *delivered* more than once, but only after
    /// the consumer before it died or gave it back. Messages are delivered
    /// in order, except those given back: they go to the back of the queue
    /// (they are delivered when the queue runs empty, or when producers lap
    /// round to their slot, whichever comes first).
    ///
    /// A held lease keeps its slot (not its room): a producer that laps
    /// round to that slot waits, as it waits for a held
    /// [`GetGrant`](crate::GetGrant). A dead holder's lease is given back
    /// when a consumer finds the queue empty and reads liveness (at once,
    /// when it sleeps with the death notice of the waiting machinery), when
    /// a producer laps round to it, or when someone calls
    /// [`join`](Queue::join).
    ///
    /// A message taken by a plain [`get`](Queue::get) is done when it is
    /// taken, as before; gets and leases mix freely.
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) once closed and drained (of
    /// messages given back too); [`Error::Corrupted`](crate::Error::Corrupted).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"job 1")?;
    /// let lease = q.get_lease()?;
    /// assert_eq!(&*lease, b"job 1");
    /// assert!(!lease.redelivered());
    /// lease.ack()?; // done: never delivered again
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease(&self) -> Result<Lease<'_>> {
        self.raw()
            .get_lease_until(Some(Deadline::NEVER))
            .or_named(self.at("get_lease"))
    }

    /// [`get_lease`](Queue::get_lease) if a message is there now, else
    /// [`Error::Empty`](crate::Error::Empty).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// assert!(matches!(q.try_get_lease(), Err(shmkit::Error::Empty { .. })));
    /// q.put(b"job")?;
    /// drop(q.try_get_lease()?); // given back
    /// let again = q.try_get_lease()?;
    /// assert_eq!(again.deliveries(), 2);
    /// again.ack()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_get_lease(&self) -> Result<Lease<'_>> {
        self.raw()
            .get_lease_until(None)
            .or_named(self.at("try_get_lease"))
    }

    /// [`get_lease`](Queue::get_lease), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout), as for `get_lease`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let r = q.get_lease_timeout(Duration::from_millis(5));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease_timeout(&self, timeout: Duration) -> Result<Lease<'_>> {
        self.raw()
            .get_lease_until(Some(Deadline::after(timeout)))
            .or_named(self.at("get_lease_timeout"))
    }

    /// [`get_lease_timeout`](Queue::get_lease_timeout) until `deadline` (a
    /// deadline already past tries once).
    ///
    /// # Errors
    /// As [`get_lease_timeout`](Queue::get_lease_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"job")?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// q.get_lease_deadline(deadline)?.ack()?;
    /// assert!(matches!(q.get_lease_deadline(deadline), Err(shmkit::Error::Timeout { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn get_lease_deadline(&self, deadline: std::time::Instant) -> Result<Lease<'_>> {
        self.get_lease_timeout(crate::queue::until(deadline))
            .or_named(self.at("get_lease_deadline"))
    }

    /// [`get_lease`](Queue::get_lease) as a future (see
    /// [`put_async`](Queue::put_async)).
    ///
    /// # Errors
    /// As [`get_lease`](Queue::get_lease).
    ///
    /// ```
    /// # use std::future::Future;
    /// # let q = shmkit::Queue::create_unique(1, 8)?;
    /// # let waker = std::task::Waker::noop();
    /// # let mut cx = std::task::Context::from_waker(&waker);
    /// let mut get = std::pin::pin!(q.get_lease_async());
    /// assert!(get.as_mut().poll(&mut cx).is_pending());
    /// q.put(b"job")?;
    /// let std::task::Poll::Ready(lease) = get.as_mut().poll(&mut cx) else { panic!() };
    /// lease?.ack()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[cfg(not(loom))]
    pub fn get_lease_async(&self) -> impl Future<Output = Result<Lease<'_>>> + '_ {
        self.get_with("get_lease_async", move |_| self.raw().get_lease_until(None))
    }

    /// Waits until every message put has been taken, and every one taken
    /// under a lease acked: Python's `JoinableQueue.join`, where
    /// [`Lease::ack`] is `task_done`. A message whose lease holder died is
    /// not done: it is given back (by this call too, if nobody else has)
    /// and waits for the consumer that acks it, so `join` never hangs on a
    /// dead worker's job, nor returns before it is redone. Messages put
    /// while `join` waits extend the wait.
    ///
    /// # Errors
    /// [`Error::Corrupted`](crate::Error::Corrupted).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"a")?;
    /// q.put(b"b")?;
    /// q.get_lease()?.ack()?;
    /// q.get()?; // a plain get is done when it returns
    /// q.join()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.raw().join().or_named(self.at("join"))
    }

    /// [`join`](Queue::join), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`](crate::Error::Timeout), as for `join`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"a")?;
    /// let lease = q.get_lease()?;
    /// let r = q.join_timeout(Duration::from_millis(5));
    /// assert!(matches!(r, Err(shmkit::Error::Timeout { .. })));
    /// lease.ack()?;
    /// q.join_timeout(Duration::from_millis(5))?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.raw()
            .join_timeout(timeout)
            .or_named(self.at("join_timeout"))
    }

    /// [`join_timeout`](Queue::join_timeout) until `deadline` (a deadline
    /// already past looks once).
    ///
    /// # Errors
    /// As [`join_timeout`](Queue::join_timeout).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"a")?;
    /// let deadline = Instant::now() + Duration::from_millis(5);
    /// assert!(matches!(q.join_deadline(deadline), Err(shmkit::Error::Timeout { .. })));
    /// q.get()?;
    /// q.join_deadline(deadline)?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join_deadline(&self, deadline: std::time::Instant) -> Result<()> {
        self.join_timeout(crate::queue::until(deadline))
            .or_named(self.at("join_deadline"))
    }
}
