//! Anthropic Messages wire family (placeholder; filled by the adapter work).
