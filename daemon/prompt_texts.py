"""The spoken prompts' default texts, pt-BR and English. A config's ``[prompts.text]`` overrides them."""

from __future__ import annotations

__all__ = ["DEFAULT_PROMPTS_EN", "DEFAULT_PROMPTS_PT", "PROMPT_NAMES"]

DEFAULT_PROMPTS_PT = {
    "waiting": "Aguarde enquanto entramos em contato com o morador.",
    "calling_next": "Chamando o próximo morador.",
    "nobody_answered": "Ninguém atendeu. Por favor, tente novamente mais tarde.",
    "busy": "O morador está ocupado. Por favor, tente novamente mais tarde.",
    "door_open": "Porta aberta. Pode entrar.",
    "door_not_opened": "A porta não foi aberta.",
    "out_of_service": "Interfone fora de serviço no momento. Por favor, procure a portaria.",
    "announce": "Visitante no portão. Digite o código para abrir a porta.",
    "code_accepted": "Código aceito. Porta aberta.",
    "code_rejected": "Código incorreto.",
    "call_ending": "A chamada será encerrada em breve.",
}
DEFAULT_PROMPTS_EN = {
    "waiting": "Please wait while we contact the resident.",
    "calling_next": "Calling the next resident.",
    "nobody_answered": "Nobody answered. Please try again later.",
    "busy": "The resident is busy. Please try again later.",
    "door_open": "The door is open. Please come in.",
    "door_not_opened": "The door was not opened.",
    "out_of_service": "The intercom is out of service. Please contact the concierge.",
    "announce": "A visitor is at the gate. Enter the code to open the door.",
    "code_accepted": "Code accepted. The door is open.",
    "code_rejected": "Wrong code.",
    "call_ending": "The call will end shortly.",
}
PROMPT_NAMES = tuple(DEFAULT_PROMPTS_PT)
