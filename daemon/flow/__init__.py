"""The visitor flow: a pure state machine (:mod:`.machine`) and the async runner that executes it."""
