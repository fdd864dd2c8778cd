//! Books: the fast L3 book the matcher uses, the naive reference, and the replica that
//! rebuilds books from events.

pub(crate) mod books;
pub(crate) mod ext;
pub(crate) mod ids;
pub(crate) mod ladder;
pub(crate) mod level;
#[cfg(feature = "testkit")]
pub mod naive;
pub(crate) mod order;
pub mod replica;
pub(crate) mod table;

pub use books::RestingOrder;
