"""The spoken prompts: their names (one enum, used by the flow and by config's ``[prompts.text]`` keys) and
their default texts in pt-BR and English. A config's ``[prompts.text]`` overrides a text by name."""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["DEFAULT_PROMPTS_EN", "DEFAULT_PROMPTS_PT", "PROMPT_NAMES", "Prompt"]


class Prompt(enum.StrEnum):
    """Every prompt the panel can say; a name mypy checks (a misspelt prompt is a type error)."""

    WAITING = "waiting"
    CALLING_NEXT = "calling_next"
    NOBODY_ANSWERED = "nobody_answered"
    BUSY = "busy"
    PANEL_BUSY = "panel_busy"  # a press refused because another visit is using the panel
    DOOR_OPEN = "door_open"
    DOOR_NOT_OPENED = "door_not_opened"
    OUT_OF_SERVICE = "out_of_service"
    ANNOUNCE = "announce"
    CODE_ACCEPTED = "code_accepted"
    CODE_REJECTED = "code_rejected"
    CALL_ENDING = "call_ending"
    APARTMENT_NOT_FOUND = "apartment_not_found"  # a number typed at the keypad that no apartment has


# Keyed by Prompt members (which are str): config merges its [prompts.text] overrides into these.
DEFAULT_PROMPTS_PT: Mapping[str, str] = {
    Prompt.WAITING: "Aguarde enquanto entramos em contato com o morador.",
    Prompt.CALLING_NEXT: "Chamando o próximo morador.",
    Prompt.NOBODY_ANSWERED: "Ninguém atendeu. Por favor, tente novamente mais tarde.",
    Prompt.BUSY: "O morador está ocupado. Por favor, tente novamente mais tarde.",
    Prompt.PANEL_BUSY: "O interfone está em uso. Por favor, tente novamente em instantes.",
    Prompt.DOOR_OPEN: "Porta aberta. Pode entrar.",
    Prompt.DOOR_NOT_OPENED: "A porta não foi aberta.",
    Prompt.OUT_OF_SERVICE: "Interfone fora de serviço no momento. Por favor, procure a portaria.",
    Prompt.ANNOUNCE: "Visitante no portão. Digite o código para abrir a porta.",
    Prompt.CODE_ACCEPTED: "Código aceito. Porta aberta.",
    Prompt.CODE_REJECTED: "Código incorreto.",
    Prompt.CALL_ENDING: "A chamada será encerrada em breve.",
    Prompt.APARTMENT_NOT_FOUND: "Apartamento não encontrado. Digite o número novamente.",
}
DEFAULT_PROMPTS_EN: Mapping[str, str] = {
    Prompt.WAITING: "Please wait while we contact the resident.",
    Prompt.CALLING_NEXT: "Calling the next resident.",
    Prompt.NOBODY_ANSWERED: "Nobody answered. Please try again later.",
    Prompt.BUSY: "The resident is busy. Please try again later.",
    Prompt.PANEL_BUSY: "The intercom is in use. Please try again in a moment.",
    Prompt.DOOR_OPEN: "The door is open. Please come in.",
    Prompt.DOOR_NOT_OPENED: "The door was not opened.",
    Prompt.OUT_OF_SERVICE: "The intercom is out of service. Please contact the concierge.",
    Prompt.ANNOUNCE: "A visitor is at the gate. Enter the code to open the door.",
    Prompt.CODE_ACCEPTED: "Code accepted. The door is open.",
    Prompt.CODE_REJECTED: "Wrong code.",
    Prompt.CALL_ENDING: "The call will end shortly.",
    Prompt.APARTMENT_NOT_FOUND: "Apartment not found. Please type the number again.",
}
# Plain strings, for config's key check and its error message ("accepted: waiting, calling_next, ...").
PROMPT_NAMES: tuple[str, ...] = tuple(prompt.value for prompt in Prompt)
