"""The visit, whole: the router (:mod:`.router`: presses and SIP events in, one visit at a time), the pure
state machine (:mod:`.machine`), the async runner executing it (:mod:`.runner`) over small ports
(:mod:`.ports`), and the names they share (:mod:`.vocabulary`, :mod:`.events`, :mod:`.commands`)."""
