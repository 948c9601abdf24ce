//! [`Mapping`]: what distinguishes the plain pool operators from the `try_`
//! ones, so that one [`PoolStream`](super::PoolStream) and one
//! [`PoolFuture`](super::PoolFuture) serve them all.

use std::marker::PhantomData;

use crate::context::ContextError;

mod sealed {
    pub trait Sealed {}
}

/// How a pool treats the items of its input stream (`In`): which part reaches
/// the function, what the pool yields, and what ends it early. Implemented by
/// [`Plain`] and [`Fallible`] only; it appears in the types of the pool
/// operators, never in code that uses them.
///
/// ```
/// use tokio_conc::pool::{Fallible, Mapping, Plain};
///
/// fn yields<M: Mapping<In>, In>() -> &'static str {
///     std::any::type_name::<M::Output>()
/// }
/// // `par_map` of a `String` stream with `f` returning `usize`:
/// assert_eq!(yields::<Plain<usize>, String>(), "usize");
/// // `try_par_map` of a `Result<String, E>` stream with `f` returning `Result<u8, E>`:
/// type E = Box<dyn std::error::Error + Send + Sync>;
/// assert!(yields::<Fallible<u8>, Result<String, E>>().starts_with("core::result::Result<u8"));
/// ```
pub trait Mapping<In>: sealed::Sealed {
    /// What each call of the pool's function gets.
    type Arg;
    /// What the pool's function returns, and the pool yields.
    type Output;

    /// Whether an output can end the pool (`try_` operators).
    #[doc(hidden)]
    const CAN_FAIL: bool;

    /// Splits an input item into a call's argument, or an output that needs
    /// no call: an `Err` item of a `try_` operator's input.
    #[doc(hidden)]
    fn admit(item: In) -> Result<Self::Arg, Self::Output>;

    /// Whether `output` ends the pool (it is yielded last).
    #[doc(hidden)]
    fn fails(output: &Self::Output) -> bool;

    /// What the pool yields last when its context stops it: nothing for the
    /// plain operators, `Err(E::from(err))` for the `try_` ones.
    #[doc(hidden)]
    fn stopped(err: ContextError) -> Option<Self::Output>;
}

/// The [`Mapping`] of `par_map`, `par_map_unordered`, `par_map_keyed` and
/// `par_for_each`: each item goes to the function whole, and each call's
/// output `R` is yielded. A stop by the pool's context just ends the output.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::pool::{Plain, PoolStream};
/// use tokio_conc::prelude::*;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let lengths: PoolStream<_, Plain<usize>> =
///     futures::stream::iter(["a", "bb"]).par_map(2, |s| async move { s.len() });
/// assert_eq!(lengths.collect::<Vec<_>>().await, [1, 2]);
/// # }
/// ```
pub struct Plain<R>(PhantomData<fn() -> R>);

/// The [`Mapping`] of `try_par_map`, `try_par_map_unordered` and
/// `try_par_for_each` (futures' `try_` convention): the input is a stream of
/// `Result<T, E>`; each `Ok` value goes to the function, which returns
/// `Result<U, E>`; the first `Err`, from the input or from a call, is yielded
/// last. A stop by the pool's context ends the output with
/// `Err(E::from(context_error))`.
///
/// ```
/// use futures::StreamExt;
/// use tokio_conc::pool::{Fallible, PoolStream};
/// use tokio_conc::prelude::*;
///
/// type Error = Box<dyn std::error::Error + Send + Sync>;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let parsed: PoolStream<_, Fallible<u8>> = futures::stream::iter(["1", "2"])
///     .map(Ok::<_, Error>)
///     .try_par_map(2, |s| async move { Ok(s.parse::<u8>()?) });
/// let parsed: Vec<u8> = parsed.map(Result::unwrap).collect().await;
/// assert_eq!(parsed, [1, 2]);
/// # }
/// ```
pub struct Fallible<U>(PhantomData<fn() -> U>);

impl<R> sealed::Sealed for Plain<R> {}
impl<U> sealed::Sealed for Fallible<U> {}

// No bounds on these impls beyond what their methods need: a `'static`
// bound here would have to be proven wherever a pool's type is, and the
// compiler cannot prove it inside an `async fn` that holds a pool across an
// `.await` ("higher-ranked lifetime error" when spawning it). The operators
// ask for `Send + 'static` where they spawn.
impl<In, R> Mapping<In> for Plain<R> {
    type Arg = In;
    type Output = R;

    const CAN_FAIL: bool = false;

    #[inline]
    fn admit(item: In) -> Result<In, R> {
        Ok(item)
    }

    #[inline]
    fn fails(_: &R) -> bool {
        false
    }

    fn stopped(_: ContextError) -> Option<R> {
        None
    }
}

impl<T, E, U> Mapping<Result<T, E>> for Fallible<U>
where
    E: From<ContextError>,
{
    type Arg = T;
    type Output = Result<U, E>;

    const CAN_FAIL: bool = true;

    #[inline]
    fn admit(item: Result<T, E>) -> Result<T, Result<U, E>> {
        item.map_err(Err)
    }

    #[inline]
    fn fails(output: &Result<U, E>) -> bool {
        output.is_err()
    }

    fn stopped(err: ContextError) -> Option<Result<U, E>> {
        Some(Err(E::from(err)))
    }
}

impl<R> std::fmt::Debug for Plain<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plain")
    }
}

impl<U> std::fmt::Debug for Fallible<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fallible")
    }
}
