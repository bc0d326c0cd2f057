//! ingot-ssh (see ARCHITECTURE.md).
