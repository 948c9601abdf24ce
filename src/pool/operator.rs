//! What the pool operators' types have in common: one constructor for every
//! operator on a shared queue, and the `Stream` impl over an [`Engine`].

use std::future::Future;

use futures::Stream;

use super::Workers;
use super::engine::{Engine, Order, Plan};
use super::hand_off::Lanes;

/// An operator's type whose workers share one input queue (all but the keyed
/// pool): which operator it is and how it wraps its [`Engine`].
pub(crate) trait SharedQueue<S: Stream>: Sized {
    /// What the pool's function returns.
    type Output;
    /// The name a panic outside a runtime gives.
    const OPERATOR: &'static str;
    const ORDER: Order;
    /// Whether an output stops the pool (`try_` operators).
    const FAILS: Option<fn(&Self::Output) -> bool>;

    fn from_engine(engine: Engine<S, Self::Output>) -> Self;
}

/// Builds any shared-queue operator `P`: the caller's return type picks which
/// (`mod.rs` re-exports this under each operator's name).
pub(crate) fn build<P, S, F, Fut>(source: S, workers: impl Into<Workers>, f: F) -> P
where
    P: SharedQueue<S, Output = Fut::Output>,
    S: Stream,
    S::Item: Send + 'static,
    F: Fn(S::Item) -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let plan = Plan {
        operator: P::OPERATOR,
        order: P::ORDER,
        lanes: Lanes::Shared,
        route: None,
    };
    P::from_engine(Engine::new(source, workers.into(), f, plan, P::FAILS))
}

/// `impl SharedQueue for Type<S, ..>`: its output type, operator name, order,
/// failure test, and any fields besides `engine` with their initial values.
macro_rules! shared_queue {
    (
        $name:ident<S $(, $param:ident)*>, $output:ty, $operator:literal, $order:ident,
        $fails:expr $(, $field:ident: $init:expr)* $(,)?
    ) => {
        impl<S: Stream $(, $param)*> super::operator::SharedQueue<S> for $name<S $(, $param)*> {
            type Output = $output;
            const OPERATOR: &'static str = $operator;
            const ORDER: super::engine::Order = super::engine::Order::$order;
            const FAILS: Option<fn(&$output) -> bool> = $fails;

            fn from_engine(engine: super::engine::Engine<S, $output>) -> Self {
                $name { engine $(, $field: $init)* }
            }
        }
    };
}

/// `impl Stream for Type<S, ..>`, yielding what its `engine` yields.
macro_rules! engine_stream {
    ($name:ident<S $(, $param:ident)*>, $item:ty) => {
        impl<S $(, $param)*> Stream for $name<S $(, $param)*>
        where
            S: Stream,
            S::Item: Send + 'static,
            $($param: Send + 'static,)*
        {
            type Item = $item;

            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<$item>> {
                self.project().engine.poll_next(cx)
            }
        }
    };
}

pub(crate) use {engine_stream, shared_queue};
