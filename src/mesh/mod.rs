//! Cross-core communication: typed channels whose handles move between cores.

mod channel;

pub use channel::{Receiver, RecvError, SendError, Sender, TryRecvError, TrySendError, channel};
