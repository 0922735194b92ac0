//! TCP: [`TcpListener`], [`TcpStream`] and the [`TcpSocket`] builder.

mod into_std;
mod listener;
mod socket;
mod stream;

pub use into_std::IntoStdError;
pub use listener::TcpListener;
pub use socket::TcpSocket;
pub use stream::TcpStream;
