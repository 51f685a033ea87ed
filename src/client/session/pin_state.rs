//! Whether the client is pinned to one primary connection, and the
//! DISCARD ALL that may free it: pinned by the first statement that leaves
//! session state on its server, unpinned only by a DISCARD ALL that ran
//! without an error.

use crate::router::Pin;

#[derive(Debug, Default)]
pub(super) struct PinState {
    pin: Option<Pin>,
    /// A DISCARD ALL of the pinned client is running: `Some(true)` until
    /// an error shows it failed.
    discarding: Option<bool>,
}

impl PinState {
    pub fn get(&self) -> Option<Pin> {
        self.pin
    }

    pub fn is_pinned(&self) -> bool {
        self.pin.is_some()
    }

    /// Pins the client; `false` if it was pinned already (the first
    /// reason stays).
    pub fn pin(&mut self, pin: Pin) -> bool {
        if self.pin.is_some() {
            return false;
        }
        self.pin = Some(pin);
        true
    }

    /// The client sent DISCARD ALL, which undoes every kind of pin
    /// (UNLISTEN *, advisory unlock, temporary objects, prepared
    /// statements, cursors, session settings).
    pub fn discard_sent(&mut self) {
        if self.pin.is_some() {
            self.discarding = Some(true);
        }
    }

    /// The server answered with an error while a DISCARD ALL was running
    /// (inside a transaction block, say): it did not undo the pin.
    pub fn error_seen(&mut self) {
        if self.discarding.is_some() {
            self.discarding = Some(false);
        }
    }

    /// The server is idle again: the pin a successful DISCARD ALL undid,
    /// if one did.
    pub fn discard_done(&mut self) -> Option<Pin> {
        match self.discarding.take() {
            Some(true) => self.pin.take(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pin_stays() {
        let mut state = PinState::default();
        assert!(state.pin(Pin::Listen));
        assert!(!state.pin(Pin::TempObject));
        assert_eq!(state.get(), Some(Pin::Listen));
    }

    #[test]
    fn a_successful_discard_all_unpins() {
        let mut state = PinState::default();
        state.pin(Pin::AdvisoryLock);
        state.discard_sent();
        assert_eq!(state.discard_done(), Some(Pin::AdvisoryLock));
        assert!(!state.is_pinned());
    }

    #[test]
    fn a_failed_discard_all_keeps_the_pin() {
        let mut state = PinState::default();
        state.pin(Pin::Prepare);
        state.discard_sent();
        state.error_seen();
        assert_eq!(state.discard_done(), None);
        assert!(state.is_pinned());
        // The next statement's idle does not unpin either.
        assert_eq!(state.discard_done(), None);
    }

    #[test]
    fn discard_all_of_an_unpinned_client_is_nothing_to_undo() {
        let mut state = PinState::default();
        state.discard_sent();
        assert!(state.pin(Pin::Listen));
        assert_eq!(state.discard_done(), None);
        assert!(state.is_pinned());
    }

    #[test]
    fn errors_without_a_discard_change_nothing() {
        let mut state = PinState::default();
        state.pin(Pin::Listen);
        state.error_seen();
        state.discard_sent();
        assert_eq!(state.discard_done(), Some(Pin::Listen));
    }
}
