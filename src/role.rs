//! Primary or replica: where the router sends a statement, what a server
//! is, what a pooled connection is, where the metrics say a statement ran.
//! One type for all of them, below everything that uses it, so that no
//! layer maps another's enum by hand.

/// Primary or replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    // The values index per-role arrays (the metrics' counters).
    Primary = 0,
    Replica = 1,
}

impl Role {
    /// Both roles, in index order.
    pub const ALL: [Role; 2] = [Role::Primary, Role::Replica];

    /// As logs, metric labels and the admin console show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}
