//! Pod status as the kubelet reports it, computed from the containers' states.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// What a container is doing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum State {
    /// Not running: being prepared, backing off, or refused.
    Waiting { reason: String, message: String },
    /// Running since `started`.
    Running { started: Timestamp },
    /// Exited.
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started: Timestamp,
        finished: Timestamp,
    },
}

impl State {
    /// A waiting state.
    pub fn waiting(reason: &str, message: impl Into<String>) -> Self {
        Self::Waiting {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    fn to_api(&self) -> ContainerState {
        match self {
            Self::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..ContainerState::default()
            },
            Self::Running { started } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started)),
                }),
                ..ContainerState::default()
            },
            Self::Terminated {
                exit_code,
                signal,
                reason,
                started,
                finished,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    signal: *signal,
                    reason: Some(reason.clone()),
                    started_at: Some(Time(*started)),
                    finished_at: Some(Time(*finished)),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            },
        }
    }
}

/// The agent's view of one container.
#[derive(Debug, Clone)]
pub(crate) struct ContainerView {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    /// Has run at least once (a container backing off after a crash still counts).
    pub ever_started: bool,
    /// Exited and will not be restarted.
    pub finished: bool,
}

impl ContainerView {
    /// The API form.
    pub fn to_api(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: format!("korc-process://{}", self.image),
            container_id: self
                .ever_started
                .then(|| format!("korc-process://{}", self.name)),
            state: Some(self.state.to_api()),
            last_state: self.last.as_ref().map(State::to_api),
            ready: self.ready,
            restart_count: self.restart_count,
            started: Some(matches!(self.state, State::Running { .. })),
            ..ContainerStatus::default()
        }
    }
}

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// The phase from the init containers' outcome and the main containers, as the kubelet's getPhase.
pub(crate) fn phase(init_done: bool, init_failed: bool, containers: &[ContainerView]) -> Phase {
    if init_failed {
        return Phase::Failed;
    }
    if !init_done || containers.iter().any(|c| !c.ever_started) {
        return Phase::Pending;
    }
    if containers.iter().any(|c| !c.finished) {
        return Phase::Running;
    }
    let all_ok = containers
        .iter()
        .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
    if all_ok {
        Phase::Succeeded
    } else {
        Phase::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: State, ever_started: bool, finished: bool) -> ContainerView {
        ContainerView {
            name: "c".to_owned(),
            image: "busybox".to_owned(),
            state,
            last: None,
            restart_count: 0,
            ready: false,
            ever_started,
            finished,
        }
    }

    fn exited(code: i32) -> State {
        let now = Timestamp::now();
        State::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.to_owned(),
            started: now,
            finished: now,
        }
    }

    #[test]
    fn phase_follows_the_containers() {
        let running = State::Running {
            started: Timestamp::now(),
        };
        assert_eq!(
            phase(false, false, &[view(running.clone(), true, false)]),
            Phase::Pending
        );
        assert_eq!(phase(true, true, &[]), Phase::Failed);
        assert_eq!(
            phase(
                true,
                false,
                &[view(State::waiting("ContainerCreating", ""), false, false)]
            ),
            Phase::Pending
        );
        assert_eq!(
            phase(true, false, &[view(running, true, false)]),
            Phase::Running
        );
        // Backing off after a crash is still Running.
        assert_eq!(
            phase(
                true,
                false,
                &[view(State::waiting("CrashLoopBackOff", ""), true, false)]
            ),
            Phase::Running
        );
        assert_eq!(
            phase(true, false, &[view(exited(0), true, true)]),
            Phase::Succeeded
        );
        assert_eq!(
            phase(
                true,
                false,
                &[view(exited(0), true, true), view(exited(3), true, true)]
            ),
            Phase::Failed
        );
    }
}
