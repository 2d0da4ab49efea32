//! The same test bodies on the asynchronous driver (feature `async`).
//!
//! `backend_tests!` expands each body a second time per backend (`sqlite_async::name`,
//! `postgres_async::name`, `mysql_async::name`), where:
//!
//! - `Conn` is diesel-async's `AsyncConnectionWrapper` around the backend's async connection
//!   (`AsyncPgConnection`, `AsyncMysqlConnection`, `SyncConnectionWrapper<SqliteConnection>`):
//!   a synchronous Diesel connection on the outside, so the body's own queries (setup, checks,
//!   statement logs) run as they are;
//! - `UnitOfWork`, `Scope` and `uow::transaction` are the ones below: each call of the unit of
//!   work's `commit`, `flush`, `load`, `refresh` or scope goes to uow's `AsyncUnitOfWork` on the
//!   async connection inside the wrapper, and is waited for on the test's thread ([`wait`]),
//!   with the tests' tokio runtime driving the connection.
//!
//! So every statement uow sends in these tests goes through the async driver.
#![allow(dead_code)]

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Wake, Waker};

pub use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncConnection;

pub use ::uow::*;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("cannot start the tests' tokio runtime: {e}"),
    }
});

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to its end on this thread, inside the tests' runtime (whose workers drive the
/// connections' I/O). Calls nest: a scope's body waits for its own flushes.
pub fn wait<F: Future>(future: F) -> F::Output {
    let _entered = RUNTIME.enter();
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// Opens an async connection at `url` inside the tests' runtime, wrapped for the body's own
/// synchronous queries.
pub fn connect<C: AsyncConnection>(url: &str) -> AsyncConnectionWrapper<C> {
    let _entered = RUNTIME.enter();
    match wait(C::establish(url)) {
        Ok(conn) => AsyncConnectionWrapper::from(conn),
        Err(e) => panic!("cannot connect to {url} through diesel-async: {e}"),
    }
}

/// A connection of the async test modules: a synchronous Diesel connection on the outside,
/// the async connection inside.
pub trait Wrapped: diesel::Connection<Backend: Dialect> + Send + 'static {
    type Inner: AsyncConnection<Backend = Self::Backend> + 'static;
    fn inner(&mut self) -> &mut Self::Inner;
}

impl<C> Wrapped for AsyncConnectionWrapper<C>
where
    C: AsyncConnection + 'static,
    C::Backend: Dialect,
    Self: diesel::Connection<Backend = C::Backend>,
{
    type Inner = C;
    fn inner(&mut self) -> &mut C {
        self
    }
}

/// Lets a value the test's own closures hold (a `&mut TestDb`, a boxed error) into uow's
/// `Send` futures. Sound here: [`wait`] polls every future of a test on the test's thread, so
/// nothing inside one ever moves to another thread.
struct OnThisThread<T>(T);

// SAFETY: see the type's documentation; the futures are only polled by `wait`, on the thread
// that made them.
unsafe impl<T> Send for OnThisThread<T> {}

impl<F: Future + Unpin> Future for OnThisThread<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// A test's scope body with its types and lifetimes erased: it runs the test's closure, keeps
/// what it returned aside, and says whether the scope should commit.
type Body<W> = BorrowingBody<'static, W>;

/// [`Body`] before its lifetime is erased.
type BorrowingBody<'a, W> = Box<dyn for<'x> FnOnce(&mut Scope<'x, W>) -> bool + 'a>;

/// What a body returns to make uow roll the scope back, the test's own error being kept
/// aside.
fn rolled_back_by_test() -> uow::Error {
    uow::Error::Hook("the test's scope body failed".into())
}

/// Wraps the test's closure `f` into a [`Body`] that leaves its result in `slot`.
///
/// # Safety
///
/// The body borrows `f`'s captures and `slot` without saying so: it must have run or been
/// dropped before either goes away. [`run_body`] waits for the scope to end, so a body handed
/// to it and the call that made it end together.
unsafe fn erase<'a, W, R, E, F>(f: F, slot: &'a mut Option<Result<R, E>>) -> Body<W>
where
    W: Wrapped,
    F: FnOnce(&mut Scope<'_, W>) -> Result<R, E> + 'a,
    R: 'a,
    E: 'a,
{
    let body: BorrowingBody<'a, W> = Box::new(move |scope: &mut Scope<'_, W>| {
        let result = f(scope);
        let ok = result.is_ok();
        *slot = Some(result);
        ok
    });
    // SAFETY: see the function's documentation.
    unsafe { std::mem::transmute(body) }
}

/// Runs `body` as the body of a scope uow runs on the async driver: true means commit (or
/// release), false roll back.
fn scope_body<'r, W: Wrapped>(
    scope: &'r mut uow::Scope<'_, Async<W::Inner>>,
    body: OnThisThread<Body<W>>,
) -> uow::ScopedBoxFuture<'static, 'r, uow::Result<()>> {
    let run = Box::pin(async move {
        let body = body;
        let mut scope = Scope::new(scope);
        if (body.0)(&mut scope) {
            Ok(())
        } else {
            Err(rolled_back_by_test())
        }
    });
    Box::pin(OnThisThread(run))
}

/// An outermost scope with `body`, on the async driver.
fn transaction_with<W: Wrapped>(
    uow: &mut uow::AsyncUnitOfWork<W::Inner>,
    conn: &mut W::Inner,
    body: Body<W>,
) -> uow::Result<()> {
    let body = OnThisThread(body);
    wait(uow.transaction(conn, move |scope| {
        let body = body;
        scope_body(scope, body)
    }))
}

/// A nested scope with `body`, on the async driver.
fn nested_with<W: Wrapped>(
    scope: &mut uow::Scope<'_, Async<W::Inner>>,
    body: Body<W>,
) -> uow::Result<()> {
    let body = OnThisThread(body);
    wait(scope.nested(move |scope| {
        let body = body;
        scope_body(scope, body)
    }))
}

/// The result a test's body left aside, or uow's error.
fn outcome<R, E: From<uow::Error>>(
    slot: Option<Result<R, E>>,
    ended: uow::Result<()>,
) -> Result<R, E> {
    match (slot, ended) {
        (Some(Ok(value)), Ok(())) => Ok(value),
        (Some(Err(e)), _) => Err(e),
        (_, Err(e)) => Err(E::from(e)),
        (None, Ok(())) => Err(E::from(uow::Error::NoTransaction)),
    }
}

/// The tests' unit of work in the async modules: uow's `AsyncUnitOfWork` with the test's
/// synchronous calls.
pub struct UnitOfWork<W: Wrapped>(uow::AsyncUnitOfWork<W::Inner>);

impl<W: Wrapped> Deref for UnitOfWork<W> {
    type Target = uow::UnitOfWork<Async<W::Inner>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<W: Wrapped> DerefMut for UnitOfWork<W> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<W: Wrapped> Default for UnitOfWork<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wrapped> UnitOfWork<W> {
    pub fn new() -> Self {
        UnitOfWork(uow::AsyncUnitOfWork::new())
    }

    pub fn commit(&mut self, conn: &mut W) -> uow::Result<CommitReport> {
        wait(self.0.commit(conn.inner()))
    }

    pub fn flush(&mut self, conn: &mut W) -> uow::Result<CommitReport> {
        wait(self.0.flush(conn.inner()))
    }

    pub fn load<T: Load<W::Backend>>(
        &mut self,
        conn: &mut W,
        key: T::Key,
    ) -> uow::Result<Handle<T>> {
        wait(self.0.load(conn.inner(), key))
    }

    pub fn attach_aggregates<T: Load<W::Backend>>(
        &mut self,
        conn: &mut W,
        roots: Vec<T>,
    ) -> uow::Result<Vec<Handle<T>>> {
        wait(self.0.attach_aggregates(conn.inner(), roots))
    }

    pub fn refresh<T: Load<W::Backend>>(
        &mut self,
        conn: &mut W,
        handle: &Handle<T>,
    ) -> uow::Result<()> {
        wait(self.0.refresh(conn.inner(), handle))
    }

    pub fn transaction<R, E, F>(&mut self, conn: &mut W, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Scope<'_, W>) -> Result<R, E>,
        E: From<uow::Error>,
    {
        let mut slot = None;
        // SAFETY: `transaction_with` waits for the scope to end.
        let body = unsafe { erase(f, &mut slot) };
        let ended = transaction_with(&mut self.0, conn.inner(), body);
        outcome(slot, ended)
    }
}

/// `uow::transaction` of the async modules.
pub fn transaction<W, R, E, F>(conn: &mut W, f: F) -> Result<R, E>
where
    W: Wrapped,
    F: FnOnce(&mut Scope<'_, W>) -> Result<R, E>,
    E: From<uow::Error>,
{
    UnitOfWork::<W>::new().transaction(conn, f)
}

/// The tests' scope in the async modules: uow's async `Scope` with the test's synchronous
/// calls. One lifetime, as the synchronous `Scope<'_, C>` has, so that generic test code
/// names both alike: it holds the scope by pointer, valid for `'a`.
pub struct Scope<'a, W: Wrapped> {
    scope: std::ptr::NonNull<uow::Scope<'static, Async<W::Inner>>>,
    _borrow: std::marker::PhantomData<&'a mut ()>,
}

impl<'a, W: Wrapped> Scope<'a, W> {
    fn new(scope: &'a mut uow::Scope<'_, Async<W::Inner>>) -> Self {
        Scope {
            scope: std::ptr::NonNull::from(scope).cast(),
            _borrow: std::marker::PhantomData,
        }
    }

    fn get(&mut self) -> &mut uow::Scope<'static, Async<W::Inner>> {
        // SAFETY: the pointer came from a `&'a mut` that this value stands in for, so it is
        // valid and unaliased for as long as `self` is borrowed here. The scope's own lifetime
        // is widened to `'static` only in the type: every use goes through this borrow of
        // `self`, and no reference it hands out outlives that borrow.
        unsafe { self.scope.as_mut() }
    }
}

impl<W: Wrapped> Deref for Scope<'_, W> {
    type Target = uow::UnitOfWork<Async<W::Inner>>;
    fn deref(&self) -> &Self::Target {
        // SAFETY: as in `get`, for a shared borrow.
        unsafe { self.scope.as_ref() }
    }
}

impl<W: Wrapped> DerefMut for Scope<'_, W> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.get()
    }
}

impl<W: Wrapped> Scope<'_, W> {
    /// The scope's connection, for the body's own synchronous queries.
    pub fn connection(&mut self) -> AsyncConnectionWrapper<&mut W::Inner> {
        AsyncConnectionWrapper::from(self.get().connection())
    }

    pub fn flush(&mut self) -> uow::Result<CommitReport> {
        wait(self.get().flush())
    }

    pub fn load<T: Load<W::Backend>>(&mut self, key: T::Key) -> uow::Result<Handle<T>> {
        wait(self.get().load(key))
    }

    pub fn refresh<T: Load<W::Backend>>(&mut self, handle: &Handle<T>) -> uow::Result<()> {
        wait(self.get().refresh(handle))
    }

    pub fn attach_aggregates<T: Load<W::Backend>>(
        &mut self,
        roots: Vec<T>,
    ) -> uow::Result<Vec<Handle<T>>> {
        wait(self.get().attach_aggregates(roots))
    }

    pub fn nested<R, E, F>(&mut self, f: F) -> Result<R, E>
    where
        F: FnOnce(&mut Scope<'_, W>) -> Result<R, E>,
        E: From<uow::Error>,
    {
        let mut slot = None;
        // SAFETY: `nested_with` waits for the scope to end.
        let body = unsafe { erase(f, &mut slot) };
        let ended = nested_with(self.get(), body);
        outcome(slot, ended)
    }
}
