//! The built-in PostgreSQL service broker (issue 7): a database and an
//! owner per instance, a login per binding.
