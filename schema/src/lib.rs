//! The files pollbench's programs exchange, as typed structs: what one program writes, another
//! reads through the same struct. Every file carries a `schema` string naming its kind and
//! version; reading checks it, and a missing or mistyped field is an error naming the file and the
//! field, never a default zero.

pub mod capabilities;
pub mod external;
pub mod file;
pub mod hlog;
pub mod results;
pub mod run;
pub mod server;
pub mod summary;
