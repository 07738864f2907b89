"""Personalised ventricular-arrhythmia detection: per-subject windows, leak-free and MetaVA
protocols, MAML with curriculum learning and pre-fine-tuning, baselines, evaluation."""

from ecgfoundry.personalize.data import Subject, load_subjects
from ecgfoundry.personalize.foundation import FoundationConfig
from ecgfoundry.personalize.maml import Curriculum, MAMLConfig
from ecgfoundry.personalize.protocol import (
    PROTOCOLS,
    SubjectSkipped,
    check_shots,
    parse_shots,
    split_names,
    split_subject,
)
from ecgfoundry.personalize.run import (
    METHODS,
    REFERENCE,
    adaptable_model,
    backbone,
    evaluate,
    meta_train,
    person_normalisation,
    run_protocol,
    save_person,
    scorers,
    split_subjects,
    summarise,
    summary_markdown,
    train_global,
    training_note,
)

__all__ = [
    "METHODS",
    "PROTOCOLS",
    "REFERENCE",
    "Curriculum",
    "FoundationConfig",
    "MAMLConfig",
    "Subject",
    "SubjectSkipped",
    "adaptable_model",
    "backbone",
    "check_shots",
    "evaluate",
    "load_subjects",
    "meta_train",
    "parse_shots",
    "person_normalisation",
    "run_protocol",
    "save_person",
    "scorers",
    "split_names",
    "split_subject",
    "split_subjects",
    "summarise",
    "summary_markdown",
    "train_global",
    "training_note",
]
