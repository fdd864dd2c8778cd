//! Books: the fast L3 book the matcher uses, the naive reference, and the replica that
//! rebuilds books from events.

pub(crate) mod fast;
pub(crate) mod ids;
pub mod naive;
pub mod replica;
pub(crate) mod table;

pub use fast::RestingOrder;
