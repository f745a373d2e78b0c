"""Label Studio ML backend: pre-annotations with scores from the served model (`llm-ner serve --label-studio`).

An annotator connects the model in Label Studio (project Settings > Model > Connect Model) with the
URL ``http://HOST:PORT/label-studio``; Label Studio appends each endpoint to it (``urljoin`` of the
URL plus "/" and the endpoint name, so a path prefix works). The requests, as Label Studio sends
them (label_studio/ml/api_connector.py) and label-studio-ml-backend answers them
(label_studio_ml/api.py, HumanSignal/label-studio-ml-backend d02cedf3):

- ``GET /health`` (and ``/``): ``{"status": "UP", "model_class": ..}``; Label Studio waits 1 s.
- ``POST /setup {"project": "ID.TIME", "schema": LABEL_CONFIG, "hostname", "access_token",
  "model_version"}``: ``{"model_version": ..}``. The config is checked here, so a project whose
  config the model cannot serve shows the reason when it connects, not at the first prediction.
- ``POST /predict {"tasks": [{"id", "data": {FIELD: TEXT}}, ..], "model_version", "project",
  "label_config", "params": {"login", "password", "context"}}``: ``{"results": [PREDICTION, ..]}``,
  one per task, in order. A prediction is ``{"model_version", "score", "result": [{"id",
  "from_name", "to_name", "type": "labels", "value": {"start", "end", "text", "labels": [LABEL]},
  "score"}, ..]}``: the same result items `llm-ner export --to labelstudio` writes
  (`data.labelstudio_task`), with the config's control names. Offsets are code points, end
  exclusive (Label Studio stores code-point offsets for ``Text``).
- ``POST /webhook`` (annotation events, "Start training"): acknowledged; this model does not train
  from Label Studio (export the annotations and run `llm-ner train`). ``GET /metrics``: ``{}``.

Scores (`llm_ner.confidence`): a result's ``score`` is its entity's probability under the decoding
that produced it; a prediction's ``score`` is the least of its entity scores and its answer score,
``1 - confidence.uncertainty``, so sorting tasks by prediction score, lowest first, is the
uncertainty sampling of `llm-ner select --by uncertainty`.

The labeling config is parsed with expat, refusing any DOCTYPE (so no entity declarations, no
expansion). It must have a ``<Labels name=.. toName=..>`` over a ``<Text name=.. value="$FIELD">``;
each ``<Label value=..>`` must be one of the prompt schema's labels (its key, its Chinese name or an
alias, `LabelSchema.lookup`) or say which with ``predicted_values="key,.."`` (the attribute
label-studio-ml-backend's ``build_label_map`` reads). A label the model does not know, or any one of
its predicted values, is an error that names it: otherwise its entities would silently never be
pre-annotated. Model labels the
config lacks are left out of the predictions (a project may annotate fewer types).

This module only speaks the protocol; `app.build_app` routes the requests here and runs the
texts through the same batcher as ``/extract``, under the same limits and access policy.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from xml.parsers import expat

from ..confidence import uncertainty
from ..data import Example, Span, labelstudio_task
from ..labels import LabelSchema
from .options import LABEL_STUDIO_PREFIX

MODEL_CLASS = "llm-ner"


class LabelStudioError(Exception):
    """A request the backend refuses: HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LabelingTarget:
    """Where pre-annotations go: the ``Labels`` control (``from_name``) over the ``Text`` object
    (``to_name``) that shows ``task["data"][field]``; ``labels``: schema key -> Label Studio label."""

    from_name: str
    to_name: str
    field: str
    labels: dict[str, str]


def _config_elements(config: str) -> list[tuple[str, dict[str, str], int | None]]:
    """(lower-case tag, attributes, index of the parent element) of every element, in document order."""
    elements: list[tuple[str, dict[str, str], int | None]] = []
    open_elements: list[int] = []

    def start(tag: str, attributes: dict[str, str]) -> None:
        elements.append((tag.lower(), attributes, open_elements[-1] if open_elements else None))
        open_elements.append(len(elements) - 1)

    def refuse_doctype(*_) -> None:
        raise LabelStudioError(400, "label config: a DOCTYPE is not accepted (Label Studio configs have none)")

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda _tag: open_elements.pop()
    parser.StartDoctypeDeclHandler = refuse_doctype  # entities are declared only in a DOCTYPE
    try:
        parser.Parse(config, True)
    except expat.ExpatError as exc:
        raise LabelStudioError(400, f"label config is not well-formed XML: {exc}") from None
    return elements


def _describe(schema: LabelSchema) -> str:
    return ", ".join(f"{t.key} ({t.name})" if t.name else t.key for t in schema.types)


def parse_label_config(config: object, schema: LabelSchema) -> LabelingTarget:
    """The `LabelingTarget` of a Label Studio labeling config (XML), or `LabelStudioError` (400) saying
    what the model cannot serve: not XML, no ``Labels`` over a ``Text``, labels outside ``schema``."""
    if not isinstance(config, str) or not config.strip():
        raise LabelStudioError(400, "no label config in the request (a <View> with <Labels> over a <Text>)")
    elements = _config_elements(config)
    texts = {attrs.get("name"): attrs for tag, attrs, _ in elements if tag == "text" and attrs.get("name")}
    control = None
    for index, (tag, attrs, _) in enumerate(elements):
        targets = [name.strip() for name in attrs.get("toName", "").split(",")]
        if tag == "labels" and attrs.get("name") and any(name in texts for name in targets):
            control = index, attrs["name"], next(name for name in targets if name in texts)
            break
    if control is None:
        raise LabelStudioError(
            400,
            'label config has no <Labels name=".." toName=".."> over a <Text name=".." value="$field">: '
            "llm-ner pre-annotates entity spans in text (Label Studio's Named Entity Recognition template)",
        )
    index, from_name, to_name = control
    text = texts[to_name]
    value = text.get("value", "")
    if not value.startswith("$") or not value[1:].isidentifier():
        raise LabelStudioError(400, f'<Text name="{to_name}"> must show a task field (value="$text"), not {value!r}')
    if text.get("valueType", "text").lower() != "text":
        raise LabelStudioError(
            400, f'<Text name="{to_name}" valueType="{text["valueType"]}">: only text in the task is supported'
        )
    labels = [attrs for tag, attrs, parent in elements if parent == index and tag == "label"]
    if not labels:
        raise LabelStudioError(400, f'<Labels name="{from_name}"> has no <Label value=".."/>')
    lookup = schema.lookup()
    mapping: dict[str, str] = {}
    unknown = []
    for label in labels:
        shown = label.get("alias") or label.get("value", "")  # what Label Studio stores in a result
        given = [v.strip() for v in label.get("predicted_values", "").split(",") if v.strip()]
        spellings = given or [label.get("value", "")]
        keys = {lookup.get(spelling.casefold()) for spelling in spellings} - {None}
        # Every predicted value must be known, not just one: a typo beside a good value would drop its label.
        missing = [spelling for spelling in spellings if lookup.get(spelling.casefold()) is None]
        if given:
            unknown += [f"{spelling!r} (predicted_values of {shown!r})" for spelling in missing]
        elif missing:
            unknown.append(repr(shown))
        for key in keys:
            if key in mapping and mapping[key] != shown:
                raise LabelStudioError(400, f"labels {mapping[key]!r} and {shown!r} both mean the model's {key!r}")
            mapping[key] = shown
    if unknown:
        raise LabelStudioError(
            400,
            f"label config: {', '.join(unknown)} not among the model's labels ({_describe(schema)}): "
            'rename them, or name the model label with predicted_values, e.g. <Label value="Person" '
            'predicted_values="name"/>',
        )
    return LabelingTarget(from_name, to_name, value[1:], mapping)


def label_studio_version(name: str | None, fingerprint: dict) -> str:
    """The ``model_version`` Label Studio shows and keys predictions by: the model or adapter name and
    a hash of the run's fingerprint, so a retrained adapter or another prompt is a new version."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"llm-ner-{name or 'model'}-{digest}"


def _task_text(task: object, number: int, target: LabelingTarget, max_text_chars: int) -> str:
    task_id = task.get("id", number) if isinstance(task, dict) else number
    data = task.get("data") if isinstance(task, dict) else None
    text = data.get(target.field) if isinstance(data, dict) else None
    if not isinstance(text, str):
        raise LabelStudioError(
            400,
            f'task {task_id}: no text in data.{target.field} (the field <Text name="{target.to_name}"> shows)',
        )
    if len(text) > max_text_chars:
        raise LabelStudioError(
            413, f"task {task_id}: a text of {len(text)} characters (limit {max_text_chars}, serve --max-text-chars)"
        )
    return text


@dataclass
class LabelStudioBackend:
    """The protocol's answers for a model with this prompt ``schema``, named ``model_version``."""

    schema: LabelSchema
    model_version: str
    prefix: str = LABEL_STUDIO_PREFIX
    _targets: OrderedDict = field(default_factory=OrderedDict)  # config -> LabelingTarget, a few projects

    def target(self, config: object) -> LabelingTarget:
        """`parse_label_config`, remembered for the last few configs (each predict request sends one)."""
        if isinstance(config, str) and config in self._targets:
            self._targets.move_to_end(config)
            return self._targets[config]
        target = parse_label_config(config, self.schema)
        self._targets[config] = target
        if len(self._targets) > 16:
            self._targets.popitem(last=False)
        return target

    def health(self) -> dict:
        return {"status": "UP", "model_class": MODEL_CLASS, "model_version": self.model_version}

    def setup(self, body: object) -> dict:
        """``/setup``: check the project's config; the model version."""
        if not isinstance(body, dict):
            raise LabelStudioError(400, 'body must be a JSON object {"project": .., "schema": LABEL_CONFIG}')
        self.target(body.get("schema"))
        return {"model_version": self.model_version}

    async def predict(
        self,
        body: object,
        submit: Callable[[list[str]], Awaitable[list[dict]]],
        max_texts: int,
        max_text_chars: int,
    ) -> dict:
        """``/predict``: every task's text through ``submit`` (the serve batcher, ``max_texts`` texts a
        call), one prediction per task."""
        if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
            raise LabelStudioError(400, 'body must be a JSON object {"tasks": [..], "label_config": ..}')
        target = self.target(body.get("label_config"))
        tasks = body["tasks"]
        texts = [_task_text(task, number, target, max_text_chars) for number, task in enumerate(tasks)]
        results: list[dict] = []
        for start in range(0, len(texts), max_texts):
            results += await submit(texts[start : start + max_texts])
        return {"results": [self.prediction(target, result) for result in results]}

    def prediction(self, target: LabelingTarget, result: dict) -> dict:
        """The Label Studio prediction of one text's serve result (``entities`` with exclusive ends,
        their ``score`` and the ``answer_score`` when the backend records token scores)."""
        spans, scores = [], {}
        for entity in result["entities"]:
            if entity["label"] not in target.labels:
                continue  # a type this project does not annotate
            span = Span(entity["start"], entity["end"], target.labels[entity["label"]])
            spans.append(span)
            if entity.get("score") is not None:
                scores[span] = entity["score"]
        example = Example("0", result["text"], sorted(set(spans)))
        prediction = labelstudio_task(example, scores, model_version=self.model_version)["predictions"][0]
        for item in prediction["result"]:
            item["from_name"], item["to_name"] = target.from_name, target.to_name
        answer_score = result.get("answer_score")
        if scores or answer_score is not None:
            prediction["score"] = round(1.0 - uncertainty(example, scores, answer_score), 6)
        return prediction

    def webhook(self, body: object) -> dict:
        """``/webhook``: acknowledged, nothing trained (label-studio-ml-backend answers events it does
        not train on with 200 too, so Label Studio does not mark the model as failing)."""
        action = body.get("action") if isinstance(body, dict) else None
        return {
            "status": "ignored",
            "action": action if isinstance(action, str) else None,
            "detail": "llm-ner does not train from Label Studio: export the annotations and run `llm-ner train`",
        }
