"""A matrix keypad made of gpiozero mock pins: pressing a key joins its row to its column, as the membrane does.

Row pins are outputs driven by the keypad code; when one changes, every column is recomputed: a column reads low
while any pressed key joins it to a row driven low, else its pull-up holds it high. Ghosting comes for free: three
keys of a rectangle held make the fourth read as pressed, exactly as on an undiode'd keypad.
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

__all__ = ["MockMatrix"]


class _RowPin(MockPin):  # type: ignore[misc]  # gpiozero is untyped
    def __init__(self, factory: Any, info: Any, matrix: MockMatrix | None = None) -> None:
        super().__init__(factory, info)
        self.matrix = matrix

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed and self.matrix is not None:
            self.matrix.recompute()
        return changed


class MockMatrix:
    def __init__(
        self, factory: MockFactory, rows: tuple[int, ...], columns: tuple[int, ...], layout: tuple[str, ...]
    ) -> None:
        self.layout = layout
        self.pressed: set[str] = set()
        self.rows = [factory.pin(pin, pin_class=_RowPin, matrix=self) for pin in rows]
        self.columns = [factory.pin(pin) for pin in columns]

    def _where(self, key: str) -> tuple[int, int]:
        for r, line in enumerate(self.layout):
            if key in line:
                return r, line.index(key)
        raise KeyError(key)

    def _low_columns(self) -> set[int]:
        """Columns joined to a row driven low through any path of pressed keys (that path is the ghost)."""
        joined = {(r, c) for r, line in enumerate(self.layout) for c, key in enumerate(line) if key in self.pressed}
        low_rows = {r for r, pin in enumerate(self.rows) if pin.function == "output" and not pin.state}
        low_cols: set[int] = set()
        frontier = set(low_rows)
        while frontier:
            cols = {c for r, c in joined if r in frontier} - low_cols
            low_cols |= cols
            frontier = {r for r, c in joined if c in cols} - low_rows
            low_rows |= frontier
        return low_cols

    def recompute(self) -> None:
        low_cols = self._low_columns()
        for c, column in enumerate(self.columns):
            if column.function != "input":
                continue
            if c in low_cols:
                column.drive_low()
            else:
                column.drive_high()

    def press(self, key: str) -> None:
        self._where(key)
        self.pressed.add(key)
        self.recompute()

    def release(self, key: str) -> None:
        self.pressed.discard(key)
        self.recompute()
