//! ingot-brokers (see ARCHITECTURE.md).
