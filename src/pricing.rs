//! Token prices and request cost (placeholder; filled by the pricing work).
