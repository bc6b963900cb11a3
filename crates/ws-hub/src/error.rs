//! What can go wrong in the hub.

/// A hub operation that could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The backplane could not number, store or read a publication (its server is
    /// unreachable, or answered with an error).
    #[error("the backplane failed: {0}")]
    Backplane(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A hook refused (and closed the connection, if the refusal says so).
    #[error("refused: {0}")]
    Refused(crate::Refusal),
}
