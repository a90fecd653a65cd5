//! The scrubber rule-file language (grows with the rule-file issue).
