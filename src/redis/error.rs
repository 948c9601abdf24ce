//! [`Error`]: the one error type of the Redis source and sink. Every variant
//! names the server, and the key where one is concerned.

use std::fmt;

use ::redis::RedisError;

use crate::context::ContextError;

/// What went wrong talking to Redis, naming the server and (where one is
/// concerned) the key.
///
/// ```
/// use tokio_conc::redis::{Error, open};
///
/// let err = open("definitely not a url").unwrap_err();
/// assert!(matches!(err, Error::InvalidUrl { .. }));
/// assert!(err.to_string().contains("definitely not a url"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL given to [`open`](super::open) does not parse.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// The driver's reason.
        source: RedisError,
    },
    /// No connection could be made within the timeout: the server is down,
    /// unreachable, does not answer, or refused the handshake.
    Connect {
        /// The server's address.
        server: String,
        /// The driver's reason.
        source: RedisError,
    },
    /// The connection broke, or the server stopped answering, in the middle
    /// of a run.
    Disconnected {
        /// The server's address.
        server: String,
        /// The driver's reason.
        source: RedisError,
    },
    /// The key holds a value that is not a stream.
    WrongType {
        /// The server's address.
        server: String,
        /// The key.
        key: String,
    },
    /// The server refused a command on the key (out of memory, read-only
    /// replica, no permission, a missing group, ...).
    Refused {
        /// The server's address.
        server: String,
        /// The key.
        key: String,
        /// The command refused, such as `XADD`.
        command: &'static str,
        /// The server's reply.
        source: RedisError,
    },
    /// The attached [`TaskContext`](crate::TaskContext) stopped the run: this
    /// is how a cancelled source or sink says it did not finish.
    Stopped(ContextError),
}

impl Error {
    /// Sorts a driver error from a command on `key` into a variant.
    pub(crate) fn from_command(
        err: RedisError,
        server: &str,
        key: &str,
        command: &'static str,
    ) -> Self {
        let wrong_type = err.code() == Some("WRONGTYPE") || err.to_string().contains("WRONGTYPE");
        if wrong_type {
            Error::WrongType {
                server: server.to_owned(),
                key: key.to_owned(),
            }
        } else if is_connection_failure(&err) {
            Error::Disconnected {
                server: server.to_owned(),
                source: err,
            }
        } else {
            Error::Refused {
                server: server.to_owned(),
                key: key.to_owned(),
                command,
                source: err,
            }
        }
    }

    /// The server this error concerns, if it concerns one.
    ///
    /// ```
    /// let err = tokio_conc::redis::Error::Stopped(tokio_conc::ContextError::Cancelled);
    /// assert_eq!(err.server(), None);
    /// ```
    pub fn server(&self) -> Option<&str> {
        match self {
            Error::Connect { server, .. }
            | Error::Disconnected { server, .. }
            | Error::WrongType { server, .. }
            | Error::Refused { server, .. } => Some(server),
            Error::InvalidUrl { .. } | Error::Stopped(_) => None,
        }
    }

    /// The key this error concerns, if it concerns one.
    ///
    /// ```
    /// let err = tokio_conc::redis::Error::Stopped(tokio_conc::ContextError::Cancelled);
    /// assert_eq!(err.key(), None);
    /// ```
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::WrongType { key, .. } | Error::Refused { key, .. } => Some(key),
            _ => None,
        }
    }
}

fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUrl { url, source } => write!(f, "invalid Redis URL `{url}`: {source}"),
            Error::Connect { server, source } => {
                write!(f, "cannot connect to Redis at {server}: {source}")
            }
            Error::Disconnected { server, source } => {
                write!(f, "lost the connection to Redis at {server}: {source}")
            }
            Error::WrongType { server, key } => write!(
                f,
                "Redis key `{key}` at {server} holds a value that is not a stream"
            ),
            Error::Refused {
                server,
                key,
                command,
                source,
            } => write!(
                f,
                "Redis at {server} refused {command} on `{key}`: {source}"
            ),
            Error::Stopped(why) => write!(f, "stopped: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::InvalidUrl { source, .. }
            | Error::Connect { source, .. }
            | Error::Disconnected { source, .. }
            | Error::Refused { source, .. } => Some(source),
            Error::Stopped(why) => Some(why),
            Error::WrongType { .. } => None,
        }
    }
}

impl From<ContextError> for Error {
    fn from(why: ContextError) -> Self {
        Error::Stopped(why)
    }
}
