//! palier: the root package. Its binary is `palier`, whose one command, `palier demo`, shows
//! the whole product working on one machine. The product's own commands are `palier-server`
//! (the release manager's side) and `palier-agent` (on each Moodle host).

pub mod cli;
pub mod demo;
