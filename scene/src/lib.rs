//! Scene generator.
