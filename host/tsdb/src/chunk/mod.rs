//! Sample encodings.
