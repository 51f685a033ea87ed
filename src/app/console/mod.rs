//! The admin console's view of the application: what SHOW reads (`show`,
//! `route`) and what the other commands do (`act`).

mod act;
mod flatten;
mod route;
mod show;
