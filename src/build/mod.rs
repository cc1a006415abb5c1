//! The daemonless Dockerfile builder.

pub mod dockerfile;
pub mod dockerignore;
pub mod lex;
