"""The grounded answer step: a follow-up made standalone (``rewrite``), passages fitted into the prompt
(``context``), the model's answer streamed (``answerer``, ``thinking``) and its [n] markers turned into checkable
citations (``citations``)."""
