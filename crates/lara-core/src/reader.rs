//! CSV readers (TSB-AD convention and generic), gzip-transparent, and score files.
