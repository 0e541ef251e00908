"""Word lists for the rule-based degraders (no tagger, no model: these run offline anywhere)."""

from __future__ import annotations

ADJECTIVES = frozenset(
    """
able absurd agreeable amiable ancient angry anxious ardent awful awkward bad bare beautiful bitter black bleak blind
blue bold brave brief bright brilliant broad broken brown busy calm careful careless charming cheap cheerful chief
civil clean clear clever close cold comfortable common considerable constant content cool correct cruel curious
damp dangerous dark dead deaf dear decent deep delicate delightful dense desperate different difficult dim direct
dirty disagreeable distant distinct dreadful dry dull dusty eager early easy elegant eminent empty endless enormous
entire equal essential evil exact excellent excessive extraordinary faint fair faithful false familiar famous fancy
fat favourite favorite fierce fine firm flat fond foolish foreign formal former fortunate foul frank free fresh
friendly frightful full funny gay general generous gentle genuine giant glad gloomy glorious golden good graceful
grand grateful grave great greedy green grey gray grim gross handsome happy hard harsh hasty healthy heavy hideous
high hollow honest horrible hot huge humble hungry idle ill immediate immense important impossible inferior innocent
intimate keen kind large late lazy lean liberal little lively lonely long loose loud lovely low loyal lucky mad
magnificent main mean mere merry mild miserable modest moist narrow nasty natural neat necessary nervous new nice
noble noisy obvious odd old open ordinary pale particular patient peculiar perfect pleasant plain polite poor popular
positive precious pretty proper proud pure quick quiet rapid rare ready real reasonable red remarkable respectable
rich ridiculous right rough round rude sad safe savage scarlet secret sensible serious severe shabby shallow sharp
shocking short shy sick silent silly simple sincere slender slight slim slow small smooth soft solemn solid sorry
sour splendid square steady steep stiff still strange strict strong stupid sudden suitable sullen sure sweet swift
tall tender terrible thick thin tidy tight timid tiny tired tolerable tremendous true ugly uneasy unhappy unpleasant
usual vague vain valuable various vast violent vivid warm weak wealthy weary wet white whole wicked wide wild wise
wonderful worthy wretched wrong yellow young
""".split()
)

ADVERBS = frozenset(
    """
very quite rather somewhat extremely exceedingly almost nearly fairly pretty too perhaps indeed merely hardly scarcely
barely truly really entirely perfectly wholly utterly thoroughly absolutely completely greatly highly deeply terribly
awfully dreadfully particularly especially certainly surely probably possibly presently directly immediately suddenly
quickly slowly softly gently quietly loudly silently warmly coldly gladly sadly kindly eagerly anxiously seriously
""".split()
)

# words ending in -ly (or an adjective suffix) that are not adjectives or adverbs
NOT_MODIFIERS = (
    frozenset(
        """
only family reply supply fly july italy rally belly lily jelly ally apply comply imply multiply rely bully emily molly
sally kelly polly dolly folly anomaly assembly butterfly monopoly holly july ply sly july anthony reilly italy
jolly dully bully hillary billy willy lilly tully
native captive motive olive alive give live five forgive relative executive detective archive hive dive drive arrive
receive deceive believe perceive conceive thrive strive survive sieve relive cable table fable stable vegetable
constable bible horrible possible invisible terrible responsible sensible visible
house famous
""".split()
    )
    - ADJECTIVES
)

ADJECTIVE_SUFFIXES = ("ful", "ous", "less", "ish", "ive", "able", "ible", "esque", "some")

DETERMINERS = frozenset(
    """
the a an his her their my your its our this that these those every each some any no another such whose either neither
""".split()
)

FUNCTION_WORDS = frozenset(
    """
i me you he him she her it we us they them my your his its our their mine yours hers ours theirs myself yourself
himself herself itself ourselves themselves who whom whose which what that this these those there here where when
why how and or but nor so yet for of in on at by to from with without within into onto upon about above below
under over after before between through during against among along around across behind beyond near off out up down
is am are was were be been being have has had having do does did doing will would shall should can could may might
must not no yes all both each every some any many much more most few less least other another such own same than
then too very just also only even still again ever never always once as if because though although while until
unless whether since till one two three four five six seven eight nine ten first last next mr mrs miss sir lady lord
dr st said says say
""".split()
)

TITLES = frozenset("mr mrs miss ms dr sir lady lord st captain colonel admiral".split())

SPEECH_VERBS = {
    "exclaimed": "said",
    "cried": "said",
    "replied": "said",
    "returned": "said",
    "rejoined": "said",
    "answered": "said",
    "observed": "said",
    "remarked": "said",
    "declared": "said",
    "whispered": "said",
    "shouted": "said",
    "muttered": "said",
    "murmured": "said",
    "sighed": "said",
    "added": "said",
    "continued": "said",
    "retorted": "said",
    "snapped": "said",
    "protested": "said",
    "urged": "said",
    "inquired": "asked",
    "enquired": "asked",
    "demanded": "asked",
    "wondered": "asked",
}

PLAIN_WORDS = {
    "whilst": "while",
    "amongst": "among",
    "upon": "on",
    "shew": "show",
    "shewn": "shown",
    "shewed": "showed",
    "ere": "before",
    "thus": "so",
    "hence": "so",
    "whereupon": "then",
    "moreover": "also",
    "nevertheless": "still",
    "however": "but",
    "therefore": "so",
    "perchance": "perhaps",
    "oft": "often",
    "thither": "there",
    "hither": "here",
    "wherefore": "why",
    "tis": "it is",
    "twas": "it was",
}

CONTRACTIONS = {
    "can't": "cannot",
    "won't": "will not",
    "shan't": "shall not",
    "don't": "do not",
    "doesn't": "does not",
    "didn't": "did not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "weren't": "were not",
    "haven't": "have not",
    "hasn't": "has not",
    "hadn't": "had not",
    "couldn't": "could not",
    "wouldn't": "would not",
    "shouldn't": "should not",
    "i'm": "I am",
    "it's": "it is",
    "that's": "that is",
    "there's": "there is",
    "he's": "he is",
    "she's": "she is",
    "you're": "you are",
    "we're": "we are",
    "they're": "they are",
    "i've": "I have",
    "you've": "you have",
    "we've": "we have",
    "they've": "they have",
    "i'll": "I will",
    "you'll": "you will",
    "he'll": "he will",
    "she'll": "she will",
    "we'll": "we will",
    "they'll": "they will",
    "i'd": "I would",
    "you'd": "you would",
    "he'd": "he would",
    "she'd": "she would",
}

# Refusals as assistants write them; narrow on purpose ("I cannot help thinking" is Austen, not a refusal).
REFUSAL_PATTERNS = (
    r"\bas an ai\b",
    r"\bi am an ai\b",
    r"\bi'm an ai\b",
    r"\bas a (?:large )?language model\b",
    r"\bi (?:cannot|can't|am unable to|won't) (?:assist|comply with|fulfil|fulfill)\b",
    r"\bi (?:cannot|can't) help with (?:that|this)\b",
    r"\bi'm sorry, but i (?:cannot|can't) (?:help|assist|write|provide|do)\b",
    r"\bagainst my (?:guidelines|programming)\b",
    r"\bopenai\b",
)
