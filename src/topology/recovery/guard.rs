//! The step guard: a caller's veto between the steps of a recovery.

use super::plan::PlannedStep;
use futures::future::BoxFuture;

/// Consulted before every step that changes an instance. The operator checks it still
/// holds its leader Lease before each step and records the successor in its status
/// before the promotion; the command line lets every step run.
pub trait StepGuard: Send + Sync {
    /// Called before each step; an Err stops the recovery before the step runs, and
    /// the record says `abandoned` with this step and reason.
    fn before<'a>(&'a self, step: &'a PlannedStep) -> BoxFuture<'a, Result<(), String>>;

    /// Called after each step that succeeded (the operator moves the `-primary`
    /// Service to a promoted instance at once, not when the whole recovery ends).
    fn after<'a>(&'a self, _step: &'a PlannedStep) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// A guard that lets every step run (the command line's).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unguarded;

impl StepGuard for Unguarded {
    fn before<'a>(&'a self, _step: &'a PlannedStep) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}
