//! Iterators over a queue's messages.

use std::marker::PhantomData;

use bytemuck::Pod;

use super::Queue;
use crate::error::{Error, Result};

/// The messages of a queue, each taken by a blocking get: from
/// [`Queue::iter`], [`QueueReceiver::iter`](crate::QueueReceiver::iter) or
/// `for m in &queue`. It ends when a get says
/// [`Error::Disconnected`] (every sender has gone and nothing is left) or
/// [`Error::Closed`] (closed and drained), or fails otherwise; then
/// [`error`](QueueIter::error) says why. On a queue without dedicated senders it
/// waits for ever for the next message unless the queue is closed.
///
/// ```
/// let q = shmkit::Queue::create_unique(4, 16)?;
/// q.put(b"a")?;
/// q.put(b"b")?;
/// q.close();
/// let mut it = q.iter();
/// assert_eq!(it.by_ref().collect::<Vec<_>>(), [b"a".to_vec(), b"b".to_vec()]);
/// assert!(matches!(it.error(), Some(shmkit::Error::Closed { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct QueueIter<'a> {
    q: &'a Queue,
    end: Option<Error>,
}

impl QueueIter<'_> {
    /// Why the iteration ended (`None` while it goes on).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.close();
    /// let mut it = q.iter();
    /// assert!(it.next().is_none());
    /// assert!(matches!(it.error(), Some(shmkit::Error::Closed { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.end.as_ref()
    }
}

impl Iterator for QueueIter<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.end.is_some() {
            return None;
        }
        match self.q.get() {
            Ok(m) => Some(m),
            Err(e) => {
                self.end = Some(e);
                None
            }
        }
    }
}

/// The messages a queue holds now, each taken by a `try_get`: from
/// [`Queue::try_iter`]. It ends at the first `Empty`, or as [`QueueIter`] does;
/// [`error`](QueueTryIter::error) says why (`Empty` included).
///
/// ```
/// let q = shmkit::Queue::create_unique(4, 16)?;
/// q.put(b"a")?;
/// let mut it = q.try_iter();
/// assert_eq!(it.next(), Some(b"a".to_vec()));
/// assert_eq!(it.next(), None);
/// assert!(matches!(it.error(), Some(shmkit::Error::Empty { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct QueueTryIter<'a> {
    q: &'a Queue,
    end: Option<Error>,
}

impl QueueTryIter<'_> {
    /// Why the iteration ended (`None` while it goes on).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// let mut it = q.try_iter();
    /// assert!(it.next().is_none());
    /// assert!(matches!(it.error(), Some(shmkit::Error::Empty { .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.end.as_ref()
    }
}

impl Iterator for QueueTryIter<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.end.is_some() {
            return None;
        }
        match self.q.try_get() {
            Ok(m) => Some(m),
            Err(e) => {
                self.end = Some(e);
                None
            }
        }
    }
}

/// A queue's messages as `Pod` values, each taken by a blocking
/// [`get_value`](Queue::get_value): from [`Queue::values`]. It ends as
/// [`QueueIter`] does, and also at a message of the wrong size
/// ([`Error::WrongSize`], see `get_value`); [`error`](QueueValues::error)
/// says why.
///
/// ```
/// let q = shmkit::Queue::create_unique(4, 16)?;
/// for i in 1..=3u32 {
///     q.put_value(&i)?;
/// }
/// q.close();
/// assert_eq!(q.values::<u32>().collect::<Vec<_>>(), [1, 2, 3]);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct QueueValues<'a, T> {
    q: &'a Queue,
    end: Option<Error>,
    _t: PhantomData<fn() -> T>,
}

impl<T> QueueValues<'_, T> {
    /// Why the iteration ended (`None` while it goes on).
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"abc")?; // not a u64
    /// let mut it = q.values::<u64>();
    /// assert!(it.next().is_none());
    /// assert!(matches!(it.error(), Some(shmkit::Error::WrongSize { expected: 8, .. })));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn error(&self) -> Option<&Error> {
        self.end.as_ref()
    }
}

impl<T: Pod> Iterator for QueueValues<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.end.is_some() {
            return None;
        }
        let r: Result<T> = self.q.get_value();
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.end = Some(e);
                None
            }
        }
    }
}

impl Queue {
    /// The messages, each taken by a blocking [`get`](Queue::get), until the
    /// queue is closed and drained, or (on a queue that has had dedicated
    /// senders, see [`open_sender`](Queue::open_sender)) every sender has
    /// gone and nothing is left. See [`QueueIter`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"x")?;
    /// q.close();
    /// for m in &q {
    ///     assert_eq!(m, b"x");
    /// }
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn iter(&self) -> QueueIter<'_> {
        QueueIter { q: self, end: None }
    }

    /// The messages there now, taken without waiting. See [`QueueTryIter`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put(b"a")?;
    /// q.put(b"b")?;
    /// assert_eq!(q.try_iter().count(), 2);
    /// assert!(q.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_iter(&self) -> QueueTryIter<'_> {
        QueueTryIter { q: self, end: None }
    }

    /// The messages as `Pod` values. See [`QueueValues`].
    ///
    /// ```
    /// let q = shmkit::Queue::create_unique(4, 16)?;
    /// q.put_value(&5u16)?;
    /// q.close();
    /// assert_eq!(q.values::<u16>().next(), Some(5));
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn values<T: Pod>(&self) -> QueueValues<'_, T> {
        QueueValues {
            q: self,
            end: None,
            _t: PhantomData,
        }
    }
}

impl<'a> IntoIterator for &'a Queue {
    type Item = Vec<u8>;
    type IntoIter = QueueIter<'a>;

    fn into_iter(self) -> QueueIter<'a> {
        self.iter()
    }
}
