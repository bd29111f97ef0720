//! Why an exchange with a backend failed, and whether the backend can have seen it.

use std::io;

use actix_web::error::PayloadError;
use derive_more::Display;

#[derive(Debug, Display)]
pub enum Error {
    #[display("cannot connect: {_0}")]
    Connect(io::Error),
    #[display("connect timed out")]
    ConnectTimeout,
    #[display("TLS handshake failed: {_0}")]
    Tls(io::Error),
    #[display("cannot send the request: {_0}")]
    Send(io::Error),
    #[display("cannot read the response: {_0}")]
    Read(io::Error),
    #[display("connection closed before the response")]
    Closed,
    /// A kept connection was closed as the request went out, and the request could
    /// not be sent again: the idle-timeout race, not a sign of a failing backend.
    #[display("kept connection closed by the backend as the request went out")]
    Stale,
    #[display("no response within the timeout")]
    Timeout,
    /// The backend sent its answer while an upload to it was still going out.
    #[display("answered before the upload was sent")]
    Answered,
    #[display("invalid response: {_0}")]
    Invalid(&'static str),
    /// The client's own request body failed; the backend did nothing wrong.
    #[display("client body: {_0}")]
    Body(PayloadError),
}

impl Error {
    /// No connection was established, so the backend saw nothing of the request.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            Error::Connect(_) | Error::ConnectTimeout | Error::Tls(_)
        )
    }

    /// sidekick itself ran out of open files: no sign of the backend failing.
    pub fn out_of_files(&self) -> bool {
        use rustix::io::Errno;
        matches!(self, Error::Connect(e)
            if matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE)))
    }

    /// What a reused keep-alive connection shows when the backend closed it while
    /// the request was on its way: the request may be sent again on a fresh one.
    pub fn stale(&self) -> bool {
        matches!(self, Error::Closed | Error::Send(_))
            || matches!(self, Error::Read(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_files_is_sidekicks_own() {
        let emfile = Error::Connect(rustix::io::Errno::MFILE.into());
        assert!(emfile.out_of_files());
        let refused = Error::Connect(io::ErrorKind::ConnectionRefused.into());
        assert!(!refused.out_of_files());
        let enfile = Error::Connect(rustix::io::Errno::NFILE.into());
        assert!(enfile.out_of_files());
        let read = Error::Read(rustix::io::Errno::MFILE.into());
        assert!(!read.out_of_files());
    }
}
