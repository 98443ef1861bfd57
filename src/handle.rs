//! What every named handle shares, written once: a segment holding one raw
//! core, made under a name (or a unique one) or opened by name, the core
//! attached once, the name kept or removed.
//!
//! A handle type (`Event`, `Lock`, `Queue`, ...) is a [`Named<C>`] over a
//! [`Core`] plus its own methods. [`Core`] says which header the segment
//! carries and how to attach to a payload; [`Named::create`] and
//! [`Named::open`] do the segment plumbing (header, initialisation before
//! publication, attach, error naming); the [`named_handle!`] macro writes
//! the public methods whose signatures every handle shares (`open`,
//! `open_with`, `name`, `keep`), with their documentation. Each type writes
//! its `create`, `create_with` and `create_unique` itself, since what an
//! object is made from differs (a capacity, an initial value, nothing), as
//! one-line calls of [`Named::create`].

use crate::error::{named_now, Error, Origin, Result};
use crate::segment::{Options, Segment, Spec};

/// A raw core that a named handle holds in a segment's payload.
pub(crate) trait Core {
    /// What the handle keeps to use the payload: a reference into the
    /// mapping (`&'static RawLock`) or a raw handle over it
    /// (`RawQueue<'static>`). It must not outlive the mapping; [`Named`]
    /// drops it before the segment.
    type View;

    /// The header a new segment gets (with `aux` set by the creator) and an
    /// opened one must carry.
    fn spec() -> Spec;

    /// Refuses, before any segment is made or opened, what can never work
    /// (a payload type aligned beyond what a segment gives). `name` is for
    /// the message.
    fn precheck(_name: &str) -> Result<()> {
        Ok(())
    }

    /// Attaches to a payload: checks what can be checked (length,
    /// alignment, a configuration read once) and returns the view.
    /// `created`: this process has just initialised it (a pipe's creator
    /// takes end 0); `aux`: the header's auxiliary field, validated against
    /// `len` by the core when it means something.
    ///
    /// # Safety
    /// `p` is the start of a payload of `len` bytes, 64-byte aligned,
    /// initialised before its header was published (or by this process,
    /// when `created`), and mapped for as long as the view lives.
    unsafe fn attach(p: *mut u8, len: usize, aux: u64, created: bool) -> Result<Self::View>;
}

/// A segment and the core attached in it. `view` is declared first, so it
/// drops first, while the mapping lives.
pub(crate) struct Named<C: Core> {
    view: C::View,
    seg: Segment,
}

impl<C: Core> Named<C> {
    /// Creates the segment `name` (a fresh unique name for `None`) with a
    /// `payload_len`-byte payload, lets `init` fill it (again, if a unique name
    /// collided) before the header is
    /// published, records `aux` in the header, and attaches. Nothing is
    /// left behind on failure.
    pub(crate) fn create(
        name: Option<&str>,
        aux: u64,
        payload_len: usize,
        opts: &Options,
        init: impl Fn(*mut u8, usize) -> Result<()>,
    ) -> Result<Named<C>> {
        C::precheck(name.unwrap_or(""))?;
        let spec = Spec { aux, ..C::spec() };
        let seg = match name {
            Some(n) => Segment::create_kind(n, spec, payload_len, opts, init)?,
            None => Segment::create_unique_kind(spec, payload_len, opts, init)?,
        };
        // SAFETY: `init` filled the payload before the header was published;
        // the mapping lives in `seg`, which outlives the view (dropped first).
        let view = unsafe { C::attach(seg.as_ptr(), seg.len(), aux, true) }
            .map_err(|e| named(e, seg.name()))?;
        Ok(Named { view, seg })
    }

    /// Opens the segment `name`, checks its header against the core's, and
    /// attaches. Errors name the segment.
    pub(crate) fn open(name: &str, opts: &Options) -> Result<Named<C>> {
        C::precheck(name)?;
        let (seg, aux) = Segment::open_kind(name, C::spec(), opts)?;
        // SAFETY: `open_kind` returned only once the creator published the
        // header, which it does after initialising the payload; the mapping
        // lives in `seg`, which outlives the view.
        let view = unsafe { C::attach(seg.as_ptr(), seg.len(), aux, false) }
            .map_err(|e| named(e, name))?;
        Ok(Named { view, seg })
    }

    #[inline]
    pub(crate) fn view(&self) -> &C::View {
        &self.view
    }

    #[inline]
    pub(crate) fn view_mut(&mut self) -> &mut C::View {
        &mut self.view
    }

    /// [`view_mut`](Named::view_mut) and [`at`](Named::at) at once, for an
    /// operation whose result borrows the view.
    /// The view, mutably, and the shared name, at once.
    #[inline]
    pub(crate) fn view_mut_and_name(&mut self) -> (&mut C::View, &crate::error::Name) {
        (&mut self.view, self.seg.origin_name())
    }

    #[inline]
    pub(crate) fn view_mut_at(
        &mut self,
        kind: &'static str,
        op: &'static str,
    ) -> (&mut C::View, impl FnOnce(&mut Error) + '_) {
        let name = self.seg.origin_name();
        (&mut self.view, move |e: &mut Error| {
            e.set_origin(kind, name, op)
        })
    }

    #[inline]
    pub(crate) fn seg(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn name(&self) -> &str {
        self.seg.name()
    }

    /// What names an error of operation `op` on this `kind` object, for
    /// [`or_named`](crate::error::OrNamed): the raw cores do not know names. The closure runs on the
    /// error path only, and shares the name (no allocation).
    #[inline]
    pub(crate) fn at(&self, kind: &'static str, op: &'static str) -> impl FnOnce(&mut Error) + '_ {
        move |e| e.set_origin(kind, self.seg.origin_name(), op)
    }

    /// A non-blocking call's answer, named for this handle (see
    /// `error::named_now`).
    #[inline(always)]
    pub(crate) fn now<T>(
        &self,
        r: Result<Option<T>>,
        kind: &'static str,
        op: &'static str,
        not_now: fn(Origin) -> Error,
    ) -> Result<T> {
        named_now(r, kind, self.seg.origin_name(), op, not_now)
    }

    pub(crate) fn keep(&self) {
        self.seg.keep();
    }

    /// The view and the segment apart. The caller must drop the view (and
    /// anything made from it) before the segment.
    pub(crate) fn into_parts(self) -> (C::View, Segment) {
        (self.view, self.seg)
    }
}

/// An error of a core's `attach`, naming the segment (the raw cores do not
/// know names). A payload too short for its core is corruption (the header
/// promised a fitting one): each `Core::attach` says so itself.
fn named(e: Error, name: &str) -> Error {
    match e {
        Error::Corrupted { detail, .. } => Error::corrupted(name, detail),
        Error::InUse { .. } => Error::InUse { name: name.into() },
        Error::WrongKind {
            name: n,
            expected,
            found,
        } if n.is_empty() => Error::WrongKind {
            name: name.into(),
            expected,
            found,
        },
        e => e,
    }
}

/// The public methods every named handle has with the same signature:
/// `open`, `open_with`, `name` and `keep`, documented with an example that
/// makes the object with `$make` (an expression, as a string). The
/// `names impl` form writes `name` and `keep` only (for `PipeEnd`, whose
/// `open` is `Pipe::open`). The handle provides `from_named` and `named`.
/// `keep` takes `&self`, so it is reachable through an `Arc`.
///
/// `$ty` is the handle (`Event`, or `Value<T>` with `[T: Pod]` generics),
/// `$what` how its docs name it ("event"), `$path` how an example names
/// the type (`"shmkit::Value::<u64>"`), and `$open_errors` the type's own
/// entries of `open`'s "Errors" section.
macro_rules! named_handle {
    (
        impl [$($g:tt)*] $ty:ty {
            what: $what:literal,
            path: $path:literal,
            make: $make:literal,
            open_errors: $open_errors:literal,
        }
    ) => {
        $crate::handle::named_handle!(@open [$($g)*] $ty, $what, $path, $make, $open_errors);
        $crate::handle::named_handle!(@names [$($g)*] $ty, $what, $make);
    };
    (
        impl $ty:ty {
            what: $what:literal,
            path: $path:literal,
            make: $make:literal,
            open_errors: $open_errors:literal,
        }
    ) => {
        $crate::handle::named_handle!(@open [] $ty, $what, $path, $make, $open_errors);
        $crate::handle::named_handle!(@names [] $ty, $what, $make);
    };
    (
        names impl $ty:ty {
            what: $what:literal,
            make: $make:literal,
        }
    ) => {
        $crate::handle::named_handle!(@names [] $ty, $what, $make);
    };
    (@open [$($g:tt)*] $ty:ty, $what:literal, $path:literal, $make:literal, $open_errors:literal) => {
        impl<$($g)*> $ty {
            #[doc = concat!("Opens the ", $what, " another process (or this one) created as `name`.")]
            ///
            /// # Errors
            /// [`Error::WrongKind`](crate::Error::WrongKind) if `name` holds
            /// another kind of object,
            #[doc = concat!($open_errors, ",")]
            /// and the errors of [`Segment::open`](crate::Segment::open)
            /// (no such name, another user's segment, ...).
            ///
            /// ```
            #[doc = concat!("let made = ", $make, ";")]
            #[doc = concat!("let again = ", $path, "::open(made.name())?;")]
            /// assert_eq!(again.name(), made.name());
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn open(name: &str) -> $crate::Result<Self> {
                Self::open_with(name, &$crate::Options::new())
            }

            #[doc = concat!("[`open`](Self::open) with [`Options`](crate::Options) (for example a longer [`init_timeout`](crate::Options::init_timeout), or [`allow_other_owner`](crate::Options::allow_other_owner)).")]
            ///
            /// # Errors
            /// As [`open`](Self::open).
            ///
            /// ```
            #[doc = concat!("let made = ", $make, ";")]
            #[doc = concat!("let again = ", $path, "::open_with(made.name(), &shmkit::Options::new())?;")]
            /// # let _ = again;
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn open_with(name: &str, opts: &$crate::Options) -> $crate::Result<Self> {
                $crate::handle::Named::open(name, opts).map(Self::from_named)
            }
        }
    };
    (@names [$($g:tt)*] $ty:ty, $what:literal, $make:literal) => {
        impl<$($g)*> $ty {
            #[doc = concat!("The name other processes open this ", $what, " by.")]
            ///
            /// ```
            #[doc = concat!("let made = ", $make, ";")]
            /// assert!(made.name().starts_with("shmkit-"));
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn name(&self) -> &str {
                self.named().name()
            }

            #[doc = concat!("Keeps the name after this (creating) handle drops, so that the ", $what, " outlives it; remove it later with [`unlink`](crate::unlink). A handle that opened the name never removes it.")]
            ///
            /// ```
            #[doc = concat!("let made = ", $make, ";")]
            /// made.keep();
            /// let name = made.name().to_owned();
            /// drop(made);
            /// shmkit::unlink(&name)?;
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn keep(&self) {
                self.named().keep();
            }
        }
    };
}

pub(crate) use named_handle;

/// `create`, `create_with` and `create_unique` for a handle made from
/// nothing but a name (`Event`, `Lock`, `RLock`), with their docs. The
/// handle provides `create_inner(name: Option<&str>, opts: &Options)`.
/// `$state` says what a new object is ("cleared", "unlocked").
macro_rules! named_create {
    (impl $ty:ty { what: $what:literal, path: $path:literal, state: $state:literal, }) => {
        impl $ty {
            #[doc = concat!("Creates a", $state, " ", $what, " named `name`.")]
            ///
            /// # Errors
            /// [`Error::InvalidName`](crate::Error::InvalidName),
            /// [`Error::AlreadyExists`](crate::Error::AlreadyExists), and the
            /// other errors of [`Segment::create`](crate::Segment::create).
            ///
            /// ```
            #[doc = concat!("# let name = format!(\"shmkit-doc-{}-{}\", \"", stringify!($ty), "\", std::process::id());")]
            #[doc = concat!("let made = ", $path, "::create(&name)?;")]
            /// assert_eq!(made.name(), name);
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create(name: &str) -> $crate::Result<Self> {
                Self::create_inner(Some(name), &$crate::Options::new())
            }

            #[doc = concat!("[`create`](Self::create) with [`Options`](crate::Options) (mode, ...).")]
            ///
            /// # Errors
            /// As [`create`](Self::create).
            ///
            /// ```
            #[doc = concat!("# let name = format!(\"shmkit-doc-{}w-{}\", \"", stringify!($ty), "\", std::process::id());")]
            #[doc = concat!("let made = ", $path, "::create_with(&name, &shmkit::Options::new().mode(0o600))?;")]
            /// # let _ = made;
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create_with(name: &str, opts: &$crate::Options) -> $crate::Result<Self> {
                Self::create_inner(Some(name), opts)
            }

            #[doc = concat!("Creates a", $state, " ", $what, " under a fresh unique name.")]
            ///
            /// # Errors
            /// As [`create`](Self::create), except for the name.
            ///
            /// ```
            #[doc = concat!("let made = ", $path, "::create_unique()?;")]
            /// assert!(made.name().starts_with("shmkit-"));
            /// # Ok::<(), shmkit::Error>(())
            /// ```
            pub fn create_unique() -> $crate::Result<Self> {
                Self::create_inner(None, &$crate::Options::new())
            }
        }
    };
}

pub(crate) use named_create;
