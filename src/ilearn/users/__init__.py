"""User-aware answers and personal memory (User-VLM 360's half of iLearn): profiles, personal concepts, and the
turn stages that read and use them. Everything here is private to its user and forgotten with them."""

from ilearn.users.concepts import Concept, ConceptBook, Recognition
from ilearn.users.personal import PersonalMemory
from ilearn.users.profiles import Profile, ProfileBook

__all__ = ["Concept", "ConceptBook", "PersonalMemory", "Profile", "ProfileBook", "Recognition"]
