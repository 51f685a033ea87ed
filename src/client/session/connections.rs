//! The server connections a client holds: the one in use, session
//! pooling's spare of the other role, and transaction pooling's parked one
//! (see `parking`); and what a request does with the one in use (`plan`).

use crate::pool::Checkout;
use crate::role::Role;

#[derive(Default)]
pub(super) struct Held {
    /// The server connection in use, if any.
    pub server: Option<Checkout>,
    /// Session pooling: the client's idle connection of the other role.
    pub spare: Option<Checkout>,
    /// Transaction pooling: the connection of the client's last
    /// transaction, kept while no other client waits for one, so that its
    /// next transaction skips a checkout.
    pub parked: Option<Checkout>,
}

/// The connection in use, as `plan` sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct InUse {
    pub role: Role,
    /// A transaction or an unfinished batch is on it: it must stay.
    pub fixed: bool,
    /// Its answers to earlier messages are still arriving.
    pub answering: bool,
}

/// What a request for `want` does with the connection in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Runs on it.
    Keep,
    /// Waits until it has answered everything before (then it can go).
    Wait,
    /// Session pooling: takes the spare, which is of the role wanted; the
    /// one in use becomes the spare.
    Swap,
    /// A connection from the pools (or the parked one); the one in use,
    /// if any, becomes the spare.
    Fresh,
}

/// `want`: the role the statement needs (`None`: whatever is in use).
/// `spare`: the spare's role. `replica_usable`: whether a replica could
/// take a read now (asked only when it matters: it looks at every pool).
pub(super) fn plan(
    in_use: Option<InUse>,
    want: Option<Role>,
    spare: Option<Role>,
    replica_usable: impl FnOnce() -> bool,
) -> Plan {
    let Some(held) = in_use else {
        return Plan::Fresh;
    };
    let Some(want) = want else {
        return Plan::Keep;
    };
    if held.fixed || held.role == want {
        return Plan::Keep;
    }
    // A primary can serve a read: better than breaking a pipeline or
    // holding a second connection when no replica is usable.
    if held.role == Role::Primary && (held.answering || !replica_usable()) {
        return Plan::Keep;
    }
    if held.answering {
        return Plan::Wait;
    }
    match spare == Some(want) {
        true => Plan::Swap,
        false => Plan::Fresh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Primary, Replica};

    fn in_use(role: Role, fixed: bool, answering: bool) -> Option<InUse> {
        Some(InUse {
            role,
            fixed,
            answering,
        })
    }

    #[test]
    fn plans() {
        let cases = [
            // (in use, want, spare, replica usable) => plan
            (None, Some(Replica), None, true, Plan::Fresh),
            (None, None, None, true, Plan::Fresh),
            (in_use(Replica, false, false), None, None, true, Plan::Keep),
            (
                in_use(Replica, false, false),
                Some(Replica),
                None,
                true,
                Plan::Keep,
            ),
            // A transaction or a batch stays where it is.
            (
                in_use(Replica, true, false),
                Some(Primary),
                None,
                true,
                Plan::Keep,
            ),
            (
                in_use(Primary, true, false),
                Some(Replica),
                None,
                true,
                Plan::Keep,
            ),
            // A read on a primary that is busy answering, or with no replica.
            (
                in_use(Primary, false, true),
                Some(Replica),
                None,
                true,
                Plan::Keep,
            ),
            (
                in_use(Primary, false, false),
                Some(Replica),
                None,
                false,
                Plan::Keep,
            ),
            // A write must not run on a replica: wait for it to be free.
            (
                in_use(Replica, false, true),
                Some(Primary),
                None,
                true,
                Plan::Wait,
            ),
            (
                in_use(Replica, false, false),
                Some(Primary),
                Some(Primary),
                true,
                Plan::Swap,
            ),
            (
                in_use(Replica, false, false),
                Some(Primary),
                None,
                true,
                Plan::Fresh,
            ),
            (
                in_use(Primary, false, false),
                Some(Replica),
                Some(Replica),
                true,
                Plan::Swap,
            ),
            (
                in_use(Primary, false, false),
                Some(Replica),
                Some(Primary),
                true,
                Plan::Fresh,
            ),
        ];
        for (i, (held, want, spare, usable, expected)) in cases.into_iter().enumerate() {
            assert_eq!(plan(held, want, spare, || usable), expected, "case {i}");
        }
    }
}
