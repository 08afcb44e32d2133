//! Why a drain could not be set up: typed, so a worker can tell a missing runtime (its own bug) from a bad token
//! setting (its operator's) and say which.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why [`Builder::install`](super::Builder::install) or [`Builder::token_from_env`](super::Builder::token_from_env)
/// failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `install` was called outside a tokio runtime: the drain's tasks need one.
    NoRuntime,
    /// The signal handlers or the watchdog thread could not be set up.
    Setup(io::Error),
    /// `DRAIN_TOKEN` is set but empty, or both it and `DRAIN_TOKEN_FILE` are set.
    TokenSetting(&'static str),
    /// The token file could not be read, or holds nothing.
    TokenFile(PathBuf, io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoRuntime => {
                f.write_str("the drain must be installed inside a tokio runtime (call it from async code)")
            }
            Error::Setup(e) => write!(f, "cannot set up the drain's signal handlers and watchdog: {e}"),
            Error::TokenSetting(why) => f.write_str(why),
            Error::TokenFile(path, e) => write!(f, "DRAIN_TOKEN_FILE={}: {e}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Setup(e) | Error::TokenFile(_, e) => Some(e),
            Error::NoRuntime | Error::TokenSetting(_) => None,
        }
    }
}

/// The token from `DRAIN_TOKEN`, else from the file `DRAIN_TOKEN_FILE` names (trimmed); `None` when neither is set.
pub(super) fn token_from(token: Option<String>, file: Option<PathBuf>) -> Result<Option<String>, Error> {
    match (token, file) {
        (Some(_), Some(_)) => Err(Error::TokenSetting("set DRAIN_TOKEN or DRAIN_TOKEN_FILE, not both")),
        (Some(token), None) if token.trim().is_empty() => {
            Err(Error::TokenSetting("DRAIN_TOKEN is set but empty: unset it, or give it a token"))
        }
        (Some(token), None) => Ok(Some(token.trim().to_owned())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::TokenFile(path.clone(), e))?;
            match text.trim() {
                "" => Err(Error::TokenFile(path, io::Error::new(io::ErrorKind::InvalidData, "the file is empty"))),
                token => Ok(Some(token.to_owned())),
            }
        }
        (None, None) => Ok(None),
    }
}
