//! Google Gemini wire family (placeholder; filled by the adapter work).
