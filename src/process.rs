//! Worker processes: this same program started again with a *role*
//! (Python's `multiprocessing.Process` with the `spawn` start method), and
//! supervised through a [`Child`] handle.
//!
//! A worker is a fresh process that opens the parent's objects by name: the
//! parent passes names (their [`name()`](crate::Queue::name)) as arguments.
//! `main` first asks [`dispatch`] (or [`role`]) whether this process is a
//! worker, so a program says in one place which roles it has:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use shmkit::process::{self, Role};
//!
//! fn square(role: &Role) -> shmkit::Result<()> {
//!     let q = shmkit::Queue::open(role.arg(0)?)?;
//!     let n: u64 = role.num(1)?;
//!     q.put(&(n * n).to_le_bytes())
//! }
//!
//! fn main() -> ExitCode {
//!     if let Some(code) = process::dispatch(&[("square", square)]) {
//!         return code; // this process was a worker
//!     }
//!     let q = shmkit::Queue::create_unique(4, 8).unwrap();
//!     let mut child = process::spawn("square", &[q.name(), "7"]).unwrap();
//!     assert!(child.join().unwrap().success());
//!     assert_eq!(q.get().unwrap(), 49u64.to_le_bytes());
//!     ExitCode::SUCCESS
//! }
//! ```
//!
//! # Dying with the parent
//!
//! A worker never outlives its parent process: the kernel SIGKILLs it when
//! the parent dies (`PR_SET_PDEATHSIG`, and a worker whose parent died
//! before that was set leaves at once). The kernel sends that signal when
//! the *thread* that forked the worker exits, so every worker is forked by
//! one thread that lives as long as the process (`shmkit-spawn`, started
//! on first use): a worker started from a short-lived thread is not killed
//! when that thread ends.
//!
//! # Dropping a `Child`
//!
//! By default a [`Child`] that is dropped before it was joined kills its
//! process and reaps it ([`OnDrop::Kill`]), so a parent that returns early
//! (an error, a panic) leaves no worker behind. [`OnDrop::Detach`] leaves it
//! running (it still dies with the parent).

use std::ffi::OsStr;
use std::fmt;
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::raw::exit::RawExit;
use crate::raw::wait::Source;
use crate::sync::{Deadline, ForkLocal};
use crate::sys;
use crate::waitset::{Interest, Waitable};

/// The argv marker that makes a process a worker: `prog --shmkit-role NAME
/// ARGS...`.
pub const ROLE_FLAG: &str = "--shmkit-role";

/// A worker's role and arguments, as its parent passed them to [`spawn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    name: String,
    args: Vec<String>,
}

impl Role {
    /// What this worker does (`"producer"`, `"echo"`, ...).
    ///
    /// ```
    /// let r = shmkit::process::Role::new("echo", ["a"]);
    /// assert_eq!(r.name(), "echo");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments the parent gave.
    ///
    /// ```
    /// let r = shmkit::process::Role::new("echo", ["a", "b"]);
    /// assert_eq!(r.args(), ["a", "b"]);
    /// ```
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Argument `i`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the role and the index, if there is
    /// no such argument.
    ///
    /// ```
    /// let r = shmkit::process::Role::new("echo", ["a"]);
    /// assert_eq!(r.arg(0)?, "a");
    /// assert!(r.arg(1).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn arg(&self, i: usize) -> Result<&str> {
        self.args.get(i).map(String::as_str).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "role {:?}: argument {i} missing (it has {})",
                self.name,
                self.args.len()
            ))
        })
    }

    /// Argument `i`, parsed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is missing or does not parse.
    ///
    /// ```
    /// let r = shmkit::process::Role::new("count", ["12", "x"]);
    /// assert_eq!(r.num::<u32>(0)?, 12);
    /// assert!(r.num::<u32>(1).is_err());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn num<T: std::str::FromStr>(&self, i: usize) -> Result<T> {
        let a = self.arg(i)?;
        a.parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "role {:?}: argument {i} ({a:?}) is not a {}",
                self.name,
                std::any::type_name::<T>()
            ))
        })
    }

    /// A role, as a worker would see it (for tests of role functions).
    ///
    /// ```
    /// let r = shmkit::process::Role::new("echo", ["x"]);
    /// assert_eq!((r.name(), r.args().len()), ("echo", 1));
    /// ```
    pub fn new<I, S>(name: &str, args: I) -> Role
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Role {
            name: name.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

/// In a worker started by [`spawn`]: its role (read from argv). In any
/// other process: `None`.
///
/// ```
/// // The doctest is not a worker.
/// assert!(shmkit::process::role().is_none());
/// ```
pub fn role() -> Option<Role> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(ROLE_FLAG) {
        return None;
    }
    let name = args.next()?;
    Some(Role {
        name,
        args: args.collect(),
    })
}

/// What a role does: returns `Ok` to exit with status 0.
pub type RoleFn = fn(&Role) -> Result<()>;

/// Runs this process's role if it is a worker, and returns the exit code
/// `main` should return: 0 if the role returned `Ok`, 1 (after printing
/// the error to stderr) if it returned an error, 2 (after printing the
/// roles there are) for a role not in `roles`. Returns `None` in a process
/// that is not a worker: `main` goes on as the parent.
///
/// ```
/// fn echo(_: &shmkit::process::Role) -> shmkit::Result<()> { Ok(()) }
/// // Not a worker: nothing runs.
/// assert!(shmkit::process::dispatch(&[("echo", echo)]).is_none());
/// ```
pub fn dispatch(roles: &[(&str, RoleFn)]) -> Option<ExitCode> {
    let role = role()?;
    Some(run_role(&role, roles))
}

fn run_role(role: &Role, roles: &[(&str, RoleFn)]) -> ExitCode {
    let Some((_, f)) = roles.iter().find(|(n, _)| *n == role.name) else {
        let known: Vec<&str> = roles.iter().map(|(n, _)| *n).collect();
        eprintln!(
            "shmkit worker: unknown role {:?}; this program has: {}",
            role.name,
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    match f(role) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmkit worker {:?}: {e}", role.name);
            ExitCode::FAILURE
        }
    }
}

/// How many CPUs this process may run on: `std::thread::available_parallelism`
/// (which honours the affinity mask and, on Linux, cgroup CPU quotas), or 1
/// when that cannot be told. Python's `os.process_cpu_count()`; the
/// machine's total (`multiprocessing.cpu_count()`) may be larger.
///
/// ```
/// assert!(shmkit::process::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What dropping a [`Child`] that was not joined does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDrop {
    /// SIGKILL the process and reap it (the default): no worker outlives
    /// its handle.
    #[default]
    Kill,
    /// Leave it running. It is still killed when this process dies; its
    /// exit status is reaped by nobody until then (a zombie once it exits).
    Detach,
}

/// Settings for a worker; see [`spawn`] for the plain case.
///
/// ```no_run
/// use shmkit::process::{Builder, OnDrop};
/// let child = Builder::new("worker")
///     .arg("shmkit-some-queue")
///     .env("RUST_LOG", "debug")
///     .on_drop(OnDrop::Detach)
///     .spawn()?;
/// # let _ = child;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    role: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    quiet: bool,
    on_drop: OnDrop,
}

impl Builder {
    /// A worker playing `role`, with no arguments yet.
    ///
    /// ```
    /// let b = shmkit::process::Builder::new("echo");
    /// # let _ = b;
    /// ```
    pub fn new(role: &str) -> Builder {
        Builder {
            role: role.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            quiet: false,
            on_drop: OnDrop::Kill,
        }
    }

    /// Adds an argument (a segment name, a count).
    ///
    /// ```
    /// let b = shmkit::process::Builder::new("echo").arg("x").arg("y");
    /// # let _ = b;
    /// ```
    pub fn arg(mut self, a: impl Into<String>) -> Builder {
        self.args.push(a.into());
        self
    }

    /// Adds arguments.
    ///
    /// ```
    /// let b = shmkit::process::Builder::new("echo").args(["x", "y"]);
    /// # let _ = b;
    /// ```
    pub fn args<I, S>(mut self, args: I) -> Builder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the worker (it inherits the rest).
    ///
    /// ```
    /// let b = shmkit::process::Builder::new("echo").env("MODE", "fast");
    /// # let _ = b;
    /// ```
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Builder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Discards the worker's stdout and stderr (by default it shares
    /// ours). Its stdin is always empty.
    ///
    /// ```
    /// let b = shmkit::process::Builder::new("echo").quiet(true);
    /// # let _ = b;
    /// ```
    pub fn quiet(mut self, quiet: bool) -> Builder {
        self.quiet = quiet;
        self
    }

    /// What dropping the unjoined [`Child`] does ([`OnDrop::Kill`] by
    /// default).
    ///
    /// ```
    /// let b = shmkit::process::Builder::new("echo").on_drop(shmkit::process::OnDrop::Detach);
    /// # let _ = b;
    /// ```
    pub fn on_drop(mut self, on_drop: OnDrop) -> Builder {
        self.on_drop = on_drop;
        self
    }

    /// Starts the worker: this program (`std::env::current_exe`) again, as
    /// `prog --shmkit-role ROLE ARGS...`.
    ///
    /// # Errors
    /// [`Error::Io`] if the program cannot be found or started;
    /// [`Error::InvalidArgument`] for an empty role.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::Builder::new("echo").arg("hi").spawn()?;
    /// child.join()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn spawn(&self) -> Result<Child> {
        if self.role.is_empty() {
            return Err(Error::InvalidArgument("a worker needs a role name".into()));
        }
        let exe = std::env::current_exe().map_err(Error::Io)?;
        let mut cmd = Command::new(exe);
        cmd.arg(ROLE_FLAG)
            .arg(&self.role)
            .args(self.args.iter().map(OsStr::new))
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if self.quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec and
        // makes only async-signal-safe calls (`die_with_parent`: prctl,
        // getppid, _exit); it allocates nothing and takes no lock that a
        // thread of the parent might have held at the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                sys::die_with_parent(parent)
            });
        }
        let inner = spawner_run(cmd).map_err(Error::Io)?;
        let exit = Box::new(RawExit::new(inner.id()));
        Ok(Child {
            inner,
            role: self.role.clone(),
            exit,
            status: None,
            on_drop: self.on_drop,
        })
    }
}

/// Starts this program again as a worker playing `role` with `args`
/// (see [`Builder`] for more settings).
///
/// # Errors
/// As [`Builder::spawn`].
///
/// ```no_run
/// let q = shmkit::Queue::create_unique(4, 64)?;
/// let mut child = shmkit::process::spawn("producer", &[q.name(), "100"])?;
/// child.join()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn spawn(role: &str, args: &[&str]) -> Result<Child> {
    Builder::new(role).args(args.iter().copied()).spawn()
}

/// A worker process started by [`spawn`].
///
/// The methods take `&mut self`: joining reaps the process and remembers
/// its status. A `Child` is waitable: in a [`WaitSet`](crate::WaitSet) it
/// is ready once the process has exited (also when it was killed).
pub struct Child {
    inner: std::process::Child,
    role: String,
    /// Boxed: a WaitSet entry and the death watcher name its word's address.
    exit: Box<RawExit>,
    status: Option<ExitStatus>,
    on_drop: OnDrop,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid())
            .field("role", &self.role)
            .field("status", &self.status)
            .finish()
    }
}

impl Child {
    /// The process id.
    ///
    /// ```no_run
    /// let child = shmkit::process::spawn("echo", &[])?;
    /// println!("worker {}", child.pid());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The role it plays.
    ///
    /// ```no_run
    /// let child = shmkit::process::spawn("echo", &[])?;
    /// assert_eq!(child.role(), "echo");
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Whether it still runs (reaping it if it has exited).
    ///
    /// # Errors
    /// [`Error::Io`] if `waitpid` fails.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// child.kill()?;
    /// assert!(!child.is_alive()?);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn is_alive(&mut self) -> Result<bool> {
        Ok(self.try_join()?.is_none())
    }

    /// Its exit status if it has exited (reaping it), else `None` at once.
    ///
    /// # Errors
    /// [`Error::Io`] if `waitpid` fails.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// let now = child.try_join()?; // None while it runs
    /// # let _ = now;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn try_join(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let s = self.inner.try_wait().map_err(Error::Io)?;
        self.status = s;
        Ok(s)
    }

    /// Waits for it to exit; its status. Joining again returns the same
    /// status.
    ///
    /// # Errors
    /// [`Error::Io`] if `waitpid` fails.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// let status = child.join()?;
    /// assert_eq!(child.join()?, status);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join(&mut self) -> Result<ExitStatus> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = self.inner.wait().map_err(Error::Io)?;
        self.status = Some(s);
        Ok(s)
    }

    /// Waits up to `timeout` for it to exit: its status, or `None` if it
    /// still runs (never before `timeout`). Woken by the exit itself (a
    /// pidfd watched by the death watcher), not by polling.
    ///
    /// # Errors
    /// [`Error::Io`] if `waitpid` fails.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// if child.join_timeout(Duration::from_secs(5))?.is_none() {
    ///     child.kill()?;
    /// }
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.try_join()? {
            return Ok(Some(s));
        }
        self.exit.wait_until(Deadline::after(timeout));
        self.try_join()
    }

    /// The exit status, if it has been joined (or seen exited).
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// child.join()?;
    /// assert!(child.exit_status().is_some());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Sends SIGKILL (Python's `Process.kill`). A child that has exited
    /// already is left alone (`Ok`); join it for its status.
    ///
    /// # Errors
    /// [`Error::Io`] if the signal cannot be sent.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// child.kill()?;
    /// child.kill()?; // again: nothing to do
    /// assert!(!child.join()?.success());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn kill(&mut self) -> Result<()> {
        if self.try_join()?.is_some() {
            return Ok(());
        }
        // The process is ours and not reaped: its pid cannot name another.
        self.inner.kill().map_err(Error::Io)
    }

    /// Sends SIGTERM (Python's `Process.terminate`): a worker may catch it
    /// and clean up. A child that has exited already is left alone (`Ok`).
    ///
    /// # Errors
    /// [`Error::Io`] if the signal cannot be sent.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// child.terminate()?;
    /// child.join()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn terminate(&mut self) -> Result<()> {
        if self.try_join()?.is_some() {
            return Ok(());
        }
        sys::terminate(self.pid()).map_err(Error::Io)
    }

    /// Sets what dropping this handle unjoined does.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("daemon", &[])?;
    /// child.set_on_drop(shmkit::process::OnDrop::Detach);
    /// drop(child); // still runs (until we exit)
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn set_on_drop(&mut self, on_drop: OnDrop) {
        self.on_drop = on_drop;
    }

    /// "The process exited": for a [`WaitSet`](crate::WaitSet) or
    /// [`wait`](crate::wait). Passing `&child` means the same. Being ready
    /// does not reap it: [`join`](Child::join) for the status.
    ///
    /// ```no_run
    /// let mut child = shmkit::process::spawn("echo", &[])?;
    /// let mut ws = shmkit::WaitSet::new();
    /// let k = ws.add(child.exit_interest())?;
    /// assert!(ws.wait()?.contains(k));
    /// # drop(ws);
    /// child.join()?;
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn exit_interest(&self) -> Interest<'_> {
        Interest::new(Source::Exit(&self.exit))
    }
}

impl Waitable for Child {
    fn interest(&self) -> Interest<'_> {
        self.exit_interest()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() || self.on_drop == OnDrop::Detach {
            return;
        }
        if let Ok(None) = self.inner.try_wait() {
            let _ = self.inner.kill();
        }
        let _ = self.inner.wait();
    }
}

// ---- the spawning thread ------------------------------------------------

type Job = (Command, mpsc::Sender<std::io::Result<std::process::Child>>);

/// The thread that forks every worker (see "Dying with the parent"), one
/// per fork generation: a forked child builds its own.
struct Spawner {
    jobs: mpsc::Sender<Job>,
}

static SPAWNER: ForkLocal<Spawner> = ForkLocal::new();

fn spawner() -> std::io::Result<&'static Spawner> {
    SPAWNER.get_or_try_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("shmkit-spawn".into())
            .spawn(move || {
                // Runs while its Spawner lives: the one published is never
                // dropped, so this thread lives as long as the process.
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        Ok(Spawner { jobs: tx })
    })
}

/// Spawns `cmd` on the spawning thread.
fn spawner_run(cmd: Command) -> std::io::Result<std::process::Child> {
    let s = spawner()?;
    let (tx, rx) = mpsc::channel();
    let gone = || std::io::Error::other("the shmkit-spawn thread is gone");
    // `Sender` is `Sync`: threads send on the one channel at once.
    s.jobs.send((cmd, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}
