"""Words for synthetic text lines: common English words (function words, everyday nouns, verbs, adjectives
and adverbs, a few contractions) and proper names, written out here so the embedded default needs no
download. The line generator (:mod:`ctcrnn.image.synthetic`) also draws random letter strings and numbers,
so a model cannot get by on this list alone.
"""

_COMMON = """
a about above across act add after again against age ago agree air all almost alone along already also always
am among an and animal another answer any anyone anything appear apple are area arm army around arrive art as
ask at aunt autumn away baby back bad bag ball band bank bar base basket bath be bear beat beautiful became
because become bed been before began begin behind being believe bell below beside best better between big bill
bird birth bit black blood blow blue board boat body bone book born both bottle bottom box boy brain branch
bread break breakfast bridge bright bring broad broke brother brought brown build building burn business busy
but butter buy by cake call came camp can capital captain car card care carry case cat catch cause cell cent
centre century certain chair chance change chapter charge cheap check cheese chief child children choose
church circle city class clean clear climb clock close cloth cloud coast coat cold collect colour column come
common company compare complete condition consider contain continue control cook cool copy corn corner correct
cost cotton could count country course court cover cow create crop cross crowd cry cup current cut dance danger
dark daughter day dead deal dear death decide deep degree depend describe desert design detail develop did die
difference different difficult dinner direct direction discover distance divide do doctor does dog dollar done
door double down draw dream dress drink drive drop dry during each ear early earth east easy eat edge effect
egg eight either electric else end enemy energy engine enough enter equal even evening event ever every
exact example except excite exercise expect experience experiment explain eye face fact fair fall family famous
far farm fast father favour fear feel feet fell felt few field fig fight figure fill final find fine finger
finish fire first fish fit five flat floor flow flower fly follow food foot for force forest form forward found
four free fresh friend from front fruit full fun game garden gas gate gather gave general gentle get gift girl
give glad glass go gold gone good got govern grand grass great green grew ground group grow guess guide gun had
hair half hall hand happen happy hard has hat have he head hear heard heart heat heavy held help her here high
hill him his history hit hold hole home hope horse hot hotel hour house how huge human hundred hunt hurry ice
idea if important in inch include indeed industry inside instead interest into iron is island it its job join
joy judge jump just keep kept key kind king kitchen knew know lady lake land language large last late laugh law
lay lead learn least leave left leg length less let letter level library lie life lift light like line list
listen little live long look lost lot loud love low machine made main major make man many map mark market
matter may me mean measure meat meet member men metal method middle might mile milk mind minute miss modern
moment money month moon more morning most mother mountain mouth move much music must my name nation natural
near necessary neck need never new news next nice night nine no noise none noon nor north nose not note
nothing notice now number object ocean of off offer office often oil old on once one only open operate or order
other our out over own page paint pair paper paragraph park part party pass past path pay peace people perhaps
period person picture piece place plain plan plane plant play please plural poem point poor position possible
post pound power practice prepare present press pretty price print probable problem process produce product
proper protect proud prove provide public pull push put quality question quick quiet quite race radio rain raise
ran range rather reach read ready real reason receive record red region remember repeat reply report rest result
return rich ride right ring rise river road rock roll room root rope rose round row rule run safe said sail salt
same sand sat save saw say school science score sea search season seat second section see seed seem sell send
sense sent sentence separate serve set settle seven several shall shape share sharp she sheet shell ship shoe
shop shore short should shoulder shout show side sight sign silver similar simple since sing single sister sit
six size skill skin sky sleep slow small smell smile snow so soft soil soldier some son song soon sound south
space speak special speed spell spend spoke spot spread spring square stand star start state station stay steam
steel step still stone stood stop store story straight strange stream street strong student study subject such
sudden sugar suit summer sun supply support sure surface surprise swim system table tail take talk tall teach
team tell temperature ten term test than thank that the their them then there these they thick thin thing think
third this those though thought thousand three through throw thus ticket tie time tiny tire to today together
told tone too took tool top total touch toward town track trade train travel tree trip trouble true try tube
turn twelve twenty two type uncle under unit until up upon us use usual valley value various very view village
visit voice vowel wait walk wall want war warm was wash watch water wave way we wear weather week weight well
went were west what wheel when where whether which while white who whole whose why wide wife wild will win wind
window winter wire wish with without woman women wonder wood word work world would write written wrong wrote
yard year yellow yes yet you young your zero
don't it's I'll we're can't isn't won't they've she'd you're o'clock
"""

_NAMES = """
London Paris Berlin Rome Madrid Vienna Dublin Oxford York Boston Chicago Texas Africa Europe Asia America
January February March April May June July August September October November December
Monday Tuesday Wednesday Thursday Friday Saturday Sunday
John Mary James Anna Peter Susan David Helen Robert Alice Thomas Emma George Laura Henry Sarah Kate Paul
Smith Brown Taylor Wilson Jones Clarke Evans Walker Wright Green Hall Wood
"""

COMMON_WORDS = tuple(_COMMON.split())
PROPER_NAMES = tuple(_NAMES.split())
