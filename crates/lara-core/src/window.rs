//! Sliding windows as views.
