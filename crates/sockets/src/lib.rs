//! Listening sockets and privileges, shared by the emperor (which owns each app's
//! socket and hands it to the vassal) and the vassal (which binds its own when run
//! standalone, or takes them from LISTEN_FDS).

mod bind;
pub mod notify;
pub mod privileges;

pub use bind::*;
